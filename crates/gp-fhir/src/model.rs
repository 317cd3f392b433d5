//! The UK Core R4 resource model the adapters emit and the gateway serialises.
//!
//! Plain serde structs rather than fhirbolt's generated model: serialising these is
//! several times faster and builds in seconds. Only the elements gp-gateway uses are
//! modelled; every field name is the FHIR R4 element name, so the output is valid R4
//! (the adapter conformance harness checks it with fhirbolt's strict parser).

use serde::{Deserialize, Serialize, Serializer};

use crate::ids::{NHS_NUMBER_SYSTEM, NhsNumber, ODS_CODE_SYSTEM, OdsCode};

/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// NHS Dictionary of medicines and devices.
pub const DMD: &str = "https://dmd.nhs.uk";
/// Read codes version 2.
pub const READ_V2: &str = "http://read.info/readv2";
/// Clinical Terms Version 3 (Read v3).
pub const CTV3: &str = "http://read.info/ctv3";
/// UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// SDS user id of a practitioner.
pub const SDS_USER_ID_SYSTEM: &str = "https://fhir.nhs.uk/Id/sds-user-id";
/// Base of every UK Core profile URL.
pub const UK_CORE_PROFILE_BASE: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-";
/// The NHS number verification status extension.
pub const NHS_NUMBER_VERIFICATION_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";
/// Its CodeSystem.
pub const NHS_NUMBER_VERIFICATION_SYSTEM: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland";
/// Confidentiality codes (`R` = restricted) used in `meta.security`.
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// UK Core human language CodeSystem (`Patient.communication.language`).
pub const HUMAN_LANGUAGE_SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage";

/// The human languages GP systems record as a preferred language (code, display): a
/// subset of UK Core HumanLanguage, the languages most often recorded in England and Wales.
pub const HUMAN_LANGUAGES: &[(&str, &str)] = &[
    ("en", "English"),
    ("cy", "Welsh"),
    ("pl", "Polish"),
    ("ur", "Urdu"),
    ("pa", "Panjabi"),
    ("bn", "Bengali"),
    ("gu", "Gujarati"),
    ("ar", "Arabic"),
    ("ro", "Romanian"),
    ("pt", "Portuguese"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("it", "Italian"),
    ("lt", "Lithuanian"),
    ("so", "Somali"),
    ("ta", "Tamil"),
    ("tr", "Turkish"),
    ("zh", "Chinese"),
    ("q4", "British Sign Language"),
];

/// The display of a [`HUMAN_LANGUAGES`] code.
pub fn human_language(code: &str) -> Option<&'static str> {
    HUMAN_LANGUAGES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| *d)
}

/// `Meta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security: Vec<Coding>,
}

impl Meta {
    /// Meta claiming the UK Core profile `name` (e.g. `Patient`).
    pub fn uk_core(name: &str) -> Self {
        // Every resource carries one: built with one exact allocation, not `format!`.
        let mut profile = String::with_capacity(UK_CORE_PROFILE_BASE.len() + name.len());
        profile.push_str(UK_CORE_PROFILE_BASE);
        profile.push_str(name);
        Self {
            profile: vec![profile],
            ..Self::default()
        }
    }
}

/// `Coding`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coding {
    /// Extensions: gp-gateway marks a SNOMED CT coding mapped by a map that is not
    /// clinically assured (see `gp_adapter::terminology`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Marks the code the clinician originally chose, when a mapped code stands beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_selected: Option<bool>,
}

impl Coding {
    /// A coding with system, code and display.
    pub fn new(system: &str, code: &str, display: &str) -> Self {
        Self {
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            display: (!display.is_empty()).then(|| display.to_owned()),
            ..Self::default()
        }
    }
}

/// `CodeableConcept`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl CodeableConcept {
    /// One coding, no text.
    pub fn coded(system: &str, code: &str, display: &str) -> Self {
        Self {
            coding: vec![Coding::new(system, code, display)],
            text: None,
        }
    }

    /// True when any coding has this system and code.
    pub fn has(&self, system: &str, code: &str) -> bool {
        self.coding
            .iter()
            .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
    }

    /// The code of the first coding in `system`.
    pub fn code_in(&self, system: &str) -> Option<&str> {
        self.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(system))
            .and_then(|c| c.code.as_deref())
    }
}

/// `Extension` with the value types gp-gateway uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_reference: Option<Reference>,
}

/// `Identifier`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Identifier {
    /// An identifier with system and value.
    pub fn new(system: &str, value: &str) -> Self {
        Self {
            extension: Vec::new(),
            system: Some(system.to_owned()),
            value: Some(value.to_owned()),
        }
    }

    /// The NHS number identifier with its verification status (`01` = verified).
    pub fn nhs_number(nhs: NhsNumber, verification: NhsVerification) -> Self {
        let (code, display) = verification.code_display();
        Self {
            extension: vec![Extension {
                url: NHS_NUMBER_VERIFICATION_EXTENSION.to_owned(),
                value_codeable_concept: Some(CodeableConcept::coded(
                    NHS_NUMBER_VERIFICATION_SYSTEM,
                    code,
                    display,
                )),
                ..Extension::default()
            }],
            system: Some(NHS_NUMBER_SYSTEM.to_owned()),
            value: Some(nhs.to_string()),
        }
    }

    /// The ODS code identifier.
    pub fn ods(ods: &OdsCode) -> Self {
        Self::new(ODS_CODE_SYSTEM, ods.as_str())
    }
}

/// NHS number verification status (UKCore-NHSNumberVerificationStatusEngland).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NhsVerification {
    /// 01: number present and verified.
    Verified,
    /// 02: number present but not traced.
    NotTraced,
    /// 03: trace required.
    TraceRequired,
    /// 04: trace attempted, no match or multiple matches.
    NoMatch,
    /// 05: trace needs to be resolved (NHS number or patient detail conflict).
    NeedsResolving,
    /// 06: trace in progress.
    InProgress,
    /// 07: number not present and trace not required.
    NotPresent,
    /// 08: trace postponed (baby under six weeks old).
    Postponed,
}

impl NhsVerification {
    /// Code and display.
    pub fn code_display(self) -> (&'static str, &'static str) {
        match self {
            Self::Verified => ("01", "Number present and verified"),
            Self::NotTraced => ("02", "Number present but not traced"),
            Self::TraceRequired => ("03", "Trace required"),
            Self::NoMatch => ("04", "Trace attempted - No match or multiple match found"),
            Self::NeedsResolving => (
                "05",
                "Trace needs to be resolved - (NHS number or patient detail conflict)",
            ),
            Self::InProgress => ("06", "Trace in progress"),
            Self::NotPresent => ("07", "Number not present and trace not required"),
            Self::Postponed => ("08", "Trace postponed (baby under six weeks)"),
        }
    }

    /// From the two-digit code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "01" => Self::Verified,
            "02" => Self::NotTraced,
            "03" => Self::TraceRequired,
            "04" => Self::NoMatch,
            "05" => Self::NeedsResolving,
            "06" => Self::InProgress,
            "07" => Self::NotPresent,
            "08" => Self::Postponed,
            _ => return None,
        })
    }
}

/// `Reference`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Boxed: few references carry one (an organisation's ODS code), and every resource
    /// holds several references: inline, it made each 64 bytes larger, and with it every
    /// cached entry's slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Box<Identifier>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Reference {
    /// A literal reference such as `Patient/9690937278`.
    pub fn to(resource_type: &str, id: &str) -> Self {
        // Several per resource: one exact allocation rather than `format!`.
        let mut reference = String::with_capacity(resource_type.len() + 1 + id.len());
        reference.push_str(resource_type);
        reference.push('/');
        reference.push_str(id);
        Self {
            reference: Some(reference),
            identifier: None,
            display: None,
        }
    }
}

/// `HumanName`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HumanName {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<String>,
}

/// `ContactPoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactPoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// `Address`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `Period`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A FHIR `decimal`, written without a spurious `.0` for whole numbers.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Decimal(pub f64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            #[allow(clippy::cast_possible_truncation)]
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// `Quantity` (UCUM-coded when `system` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    pub value: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Quantity {
    /// A UCUM quantity; `unit` is both the human unit and the UCUM code.
    pub fn ucum(value: f64, unit: &str) -> Self {
        Self {
            value: Decimal(value),
            unit: Some(unit.to_owned()),
            system: Some(UCUM.to_owned()),
            code: Some(unit.to_owned()),
        }
    }
}

/// `Annotation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub text: String,
}

/// `Patient` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deceased_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub general_practitioner: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managing_organization: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communication: Vec<PatientCommunication>,
}

/// `Patient.communication`: a language and whether it is preferred.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatientCommunication {
    pub language: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred: Option<bool>,
}

impl PatientCommunication {
    /// The preferred language `code` (a [`HUMAN_LANGUAGES`] code; others keep the code as display).
    pub fn preferred(code: &str) -> Self {
        let display = human_language(code).unwrap_or(code);
        Self {
            language: CodeableConcept {
                coding: vec![Coding::new(HUMAN_LANGUAGE_SYSTEM, code, display)],
                text: None,
            },
            preferred: Some(true),
        }
    }
}

impl Patient {
    /// The code of the preferred language (or the first language when none is marked).
    pub fn preferred_language(&self) -> Option<&str> {
        let pick = self
            .communication
            .iter()
            .find(|c| c.preferred == Some(true))
            .or_else(|| self.communication.first())?;
        pick.language
            .coding
            .iter()
            .find(|c| c.system.as_deref() == Some(HUMAN_LANGUAGE_SYSTEM))
            .and_then(|c| c.code.as_deref())
    }

    /// The NHS number from the identifiers, if one is present and valid.
    pub fn nhs_number(&self) -> Option<NhsNumber> {
        self.identifier
            .iter()
            .find(|i| i.system.as_deref() == Some(NHS_NUMBER_SYSTEM))
            .and_then(|i| i.value.as_deref())
            .and_then(|v| NhsNumber::parse(v).ok())
    }

    /// True when `meta.security` marks the record restricted (sensitive).
    pub fn is_restricted(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| {
            m.security.iter().any(|c| {
                c.system.as_deref() == Some(CONFIDENTIALITY_SYSTEM)
                    && c.code.as_deref() == Some("R")
            })
        })
    }
}

/// `Organization` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telecom: Vec<ContactPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<Address>,
}

/// `Practitioner` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Practitioner {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<HumanName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
}

/// `AllergyIntolerance.reaction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AllergyReaction {
    pub manifestation: Vec<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// `AllergyIntolerance` (UK Core; `code` 1..1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllergyIntolerance {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<CodeableConcept>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criticality: Option<String>,
    pub code: CodeableConcept,
    pub patient: Reference,
    /// The consultation the entry was recorded in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reaction: Vec<AllergyReaction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

/// `Dosage` (text only: GP systems record dosage as free text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dosage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_instruction: Option<String>,
}

/// `MedicationStatement` (UK Core; `identifier` 1..1 in the GP Connect rendering).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationStatement {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    pub medication_codeable_concept: CodeableConcept,
    pub subject: Reference,
    /// The consultation the entry was recorded in (R4 names it `context`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_asserted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub information_source: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dosage: Vec<Dosage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

/// `Condition` (UK Core; GP problems are `problem-list-item`s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    /// The consultation the entry was recorded in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abatement_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

/// `Observation.component`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
}

/// `Observation` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    /// The consultation the entry was recorded in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<CodeableConcept>,
    /// The device, as a display-only reference (GP systems hold its name, not a Device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
}

/// `Immunization.performer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImmunizationPerformer {
    pub actor: Reference,
}

/// `Immunization.protocolApplied`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolApplied {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_number_positive_int: Option<u32>,
}

/// `Immunization` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Immunization {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    pub vaccine_code: CodeableConcept,
    pub patient: Reference,
    /// The consultation the entry was recorded in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    pub occurrence_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_source: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lot_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<ImmunizationPerformer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_applied: Vec<ProtocolApplied>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

/// `Encounter.participant`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EncounterParticipant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub individual: Option<Reference>,
}

/// `Encounter` (UK Core; a GP consultation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    pub class: Coding,
    #[serde(rename = "type", default, skip_serializing_if = "Vec::is_empty")]
    pub type_: Vec<CodeableConcept>,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<EncounterParticipant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_provider: Option<Reference>,
}

/// `Slot` (UK Core): a free time a third party may book.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// The delivery channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    /// `[0].text`: the slot type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_type: Vec<CodeableConcept>,
    pub schedule: Reference,
    pub status: String,
    pub start: String,
    pub end: String,
}

/// `Schedule` (UK Core): a clinician's session at a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_category: Vec<CodeableConcept>,
    /// Practitioner, PractitionerRole and Location.
    pub actor: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planning_horizon: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `Location` (UK Core): a site of a practice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managing_organization: Option<Reference>,
}

/// `PractitionerRole` (UK Core): a clinician's SDS job role at a practice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PractitionerRole {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code: Vec<CodeableConcept>,
}

/// `Appointment.participant`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppointmentParticipant {
    pub actor: Reference,
    pub status: String,
}

/// `Appointment` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// The booking organisation, when a supplier booked it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contained: Vec<Resource>,
    /// The booking organisation's reference and the delivery channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelation_reason: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_type: Vec<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub start: String,
    pub end: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slot: Vec<Reference>,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub participant: Vec<AppointmentParticipant>,
}

/// `DocumentReference.content.attachment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Where the content is (`Binary/{id}`); none when it is too large to be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Base64 SHA-1 of the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation: Option<String>,
}

/// `DocumentReference.content`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentContentElement {
    pub attachment: Attachment,
}

/// `DocumentReference.context`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentContext {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encounter: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practice_setting: Option<CodeableConcept>,
}

/// `DocumentReference` (UK Core).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_status: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    pub subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub author: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custodian: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub content: Vec<DocumentContentElement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<DocumentContext>,
}

/// Any resource gp-gateway returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
#[allow(clippy::large_enum_variant)]
pub enum Resource {
    Patient(Patient),
    Organization(Organization),
    Practitioner(Practitioner),
    AllergyIntolerance(AllergyIntolerance),
    MedicationStatement(MedicationStatement),
    Condition(Condition),
    Observation(Observation),
    Immunization(Immunization),
    Encounter(Encounter),
    Slot(Slot),
    Schedule(Schedule),
    Location(Location),
    PractitionerRole(PractitionerRole),
    Appointment(Appointment),
    DocumentReference(DocumentReference),
}

/// The references a resource makes, in element order: one list for
/// [`Resource::references`] and [`Resource::references_mut`] alike (`iter`/`iter_mut`,
/// `as_ref`/`as_mut`, and `mut` or nothing for a borrow).
macro_rules! references_of {
    ($resource:expr, $iter:ident, $as_ref:ident, [$($m:tt)*]) => {{
        let mut out = Vec::new();
        match $resource {
            Resource::Patient(r) => {
                out.extend(r.general_practitioner.$iter());
                out.extend(r.managing_organization.$iter());
            }
            Resource::Organization(_) | Resource::Practitioner(_) => {}
            Resource::AllergyIntolerance(r) => {
                out.push(&$($m)* r.patient);
                out.extend(r.encounter.$iter());
                out.extend(r.recorder.$iter());
            }
            Resource::MedicationStatement(r) => {
                out.push(&$($m)* r.subject);
                out.extend(r.context.$iter());
                out.extend(r.information_source.$iter());
            }
            Resource::Condition(r) => {
                out.push(&$($m)* r.subject);
                out.extend(r.encounter.$iter());
                out.extend(r.recorder.$iter());
            }
            Resource::Observation(r) => {
                out.push(&$($m)* r.subject);
                out.extend(r.encounter.$iter());
                out.extend(r.performer.$iter());
            }
            Resource::Immunization(r) => {
                out.push(&$($m)* r.patient);
                out.extend(r.encounter.$iter());
                out.extend(r.performer.$iter().map(|p| &$($m)* p.actor));
            }
            Resource::Encounter(r) => {
                out.push(&$($m)* r.subject);
                out.extend(r.participant.$iter().filter_map(|p| p.individual.$as_ref()));
                out.extend(r.service_provider.$iter());
            }
            Resource::Slot(r) => out.push(&$($m)* r.schedule),
            Resource::Schedule(r) => out.extend(r.actor.$iter()),
            Resource::Location(r) => out.extend(r.managing_organization.$iter()),
            Resource::PractitionerRole(r) => {
                out.extend(r.practitioner.$iter());
                out.extend(r.organization.$iter());
            }
            Resource::Appointment(r) => {
                out.extend(r.slot.$iter());
                out.extend(r.participant.$iter().map(|p| &$($m)* p.actor));
            }
            Resource::DocumentReference(r) => {
                out.push(&$($m)* r.subject);
                out.extend(r.author.$iter());
                out.extend(r.custodian.$iter());
            }
        }
        out
    }};
}

impl Resource {
    /// `resourceType`.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Self::Patient(_) => "Patient",
            Self::Organization(_) => "Organization",
            Self::Practitioner(_) => "Practitioner",
            Self::AllergyIntolerance(_) => "AllergyIntolerance",
            Self::MedicationStatement(_) => "MedicationStatement",
            Self::Condition(_) => "Condition",
            Self::Observation(_) => "Observation",
            Self::Immunization(_) => "Immunization",
            Self::Encounter(_) => "Encounter",
            Self::Slot(_) => "Slot",
            Self::Schedule(_) => "Schedule",
            Self::Location(_) => "Location",
            Self::PractitionerRole(_) => "PractitionerRole",
            Self::Appointment(_) => "Appointment",
            Self::DocumentReference(_) => "DocumentReference",
        }
    }

    /// Logical id.
    pub fn id(&self) -> &str {
        match self {
            Self::Patient(r) => &r.id,
            Self::Organization(r) => &r.id,
            Self::Practitioner(r) => &r.id,
            Self::AllergyIntolerance(r) => &r.id,
            Self::MedicationStatement(r) => &r.id,
            Self::Condition(r) => &r.id,
            Self::Observation(r) => &r.id,
            Self::Immunization(r) => &r.id,
            Self::Encounter(r) => &r.id,
            Self::Slot(r) => &r.id,
            Self::Schedule(r) => &r.id,
            Self::Location(r) => &r.id,
            Self::PractitionerRole(r) => &r.id,
            Self::Appointment(r) => &r.id,
            Self::DocumentReference(r) => &r.id,
        }
    }

    /// Meta, if set.
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Self::Patient(r) => r.meta.as_ref(),
            Self::Organization(r) => r.meta.as_ref(),
            Self::Practitioner(r) => r.meta.as_ref(),
            Self::AllergyIntolerance(r) => r.meta.as_ref(),
            Self::MedicationStatement(r) => r.meta.as_ref(),
            Self::Condition(r) => r.meta.as_ref(),
            Self::Observation(r) => r.meta.as_ref(),
            Self::Immunization(r) => r.meta.as_ref(),
            Self::Encounter(r) => r.meta.as_ref(),
            Self::Slot(r) => r.meta.as_ref(),
            Self::Schedule(r) => r.meta.as_ref(),
            Self::Location(r) => r.meta.as_ref(),
            Self::PractitionerRole(r) => r.meta.as_ref(),
            Self::Appointment(r) => r.meta.as_ref(),
            Self::DocumentReference(r) => r.meta.as_ref(),
        }
    }

    /// Meta, to change it.
    pub fn meta_mut(&mut self) -> &mut Option<Meta> {
        match self {
            Self::Patient(r) => &mut r.meta,
            Self::Organization(r) => &mut r.meta,
            Self::Practitioner(r) => &mut r.meta,
            Self::AllergyIntolerance(r) => &mut r.meta,
            Self::MedicationStatement(r) => &mut r.meta,
            Self::Condition(r) => &mut r.meta,
            Self::Observation(r) => &mut r.meta,
            Self::Immunization(r) => &mut r.meta,
            Self::Encounter(r) => &mut r.meta,
            Self::Slot(r) => &mut r.meta,
            Self::Schedule(r) => &mut r.meta,
            Self::Location(r) => &mut r.meta,
            Self::PractitionerRole(r) => &mut r.meta,
            Self::Appointment(r) => &mut r.meta,
            Self::DocumentReference(r) => &mut r.meta,
        }
    }

    /// Sets `meta.versionId` to a version of what the resource holds: 16 hex digits of a
    /// 64-bit hash of its JSON without `meta.versionId` and `meta.lastUpdated`
    /// ([`crate::json::content_hash`]).
    /// GP systems keep no versions of record entries, so this names the content: the
    /// same on every replica and after a restart, and different once the GP system
    /// changes the entry. Returns it.
    pub fn stamp_content_version(&mut self) -> String {
        if let Some(m) = self.meta_mut() {
            m.version_id = None;
            m.last_updated = None;
        }
        let hash = crate::json::content_hash(self);
        let version = format!("{hash:016x}");
        self.meta_mut().get_or_insert_with(Meta::default).version_id = Some(version.clone());
        version
    }

    /// [`Resource::stamp_content_version`], keeping the JSON it hashed with where an
    /// answer's additions go ([`crate::json::Fresh`]), so that an answer made from it
    /// copies it rather than serialising the entry again. `None`, the version stamped
    /// all the same, where part of it is serde_json's to write.
    pub fn stamp_fresh(&mut self) -> Option<crate::json::Fresh> {
        if let Some(m) = self.meta_mut() {
            m.version_id = None;
            m.last_updated = None;
        }
        let Some(fresh) = crate::json::Fresh::of(self) else {
            self.stamp_content_version();
            return None;
        };
        let version = format!("{:016x}", fresh.content_hash());
        self.meta_mut().get_or_insert_with(Meta::default).version_id = Some(version);
        Some(fresh)
    }

    /// The clinically relevant date used by `date` searches (onset, effective,
    /// occurrence, period start, assertion date), as FHIR date/dateTime text.
    pub fn clinical_date(&self) -> Option<&str> {
        match self {
            Self::AllergyIntolerance(r) => {
                r.onset_date_time.as_deref().or(r.recorded_date.as_deref())
            }
            Self::MedicationStatement(r) => r
                .effective_period
                .as_ref()
                .and_then(|p| p.start.as_deref())
                .or(r.date_asserted.as_deref()),
            Self::Condition(r) => r.onset_date_time.as_deref().or(r.recorded_date.as_deref()),
            Self::Observation(r) => r.effective_date_time.as_deref(),
            Self::Immunization(r) => Some(&r.occurrence_date_time),
            Self::Encounter(r) => r.period.as_ref().and_then(|p| p.start.as_deref()),
            Self::Slot(r) => Some(&r.start),
            Self::Appointment(r) => Some(&r.start),
            Self::DocumentReference(r) => r.date.as_deref(),
            Self::Patient(_)
            | Self::Organization(_)
            | Self::Practitioner(_)
            | Self::Schedule(_)
            | Self::Location(_)
            | Self::PractitionerRole(_) => None,
        }
    }

    /// What the entry records, as `code` searches match it: `code` (Condition,
    /// AllergyIntolerance, Observation, with an Observation's component codes too, as
    /// FHIR's `combo-code`: a blood pressure panel is found by its systolic or diastolic
    /// code as well as its own), `medicationCodeableConcept`, `vaccineCode`,
    /// `Encounter.type`.
    pub fn codes(&self) -> Vec<&CodeableConcept> {
        match self {
            Self::AllergyIntolerance(r) => vec![&r.code],
            Self::MedicationStatement(r) => vec![&r.medication_codeable_concept],
            Self::Condition(r) => vec![&r.code],
            Self::Observation(r) => std::iter::once(&r.code)
                .chain(r.component.iter().map(|c| &c.code))
                .collect(),
            Self::Immunization(r) => vec![&r.vaccine_code],
            Self::Encounter(r) => r.type_.iter().collect(),
            Self::Slot(r) => r.service_type.iter().collect(),
            Self::Appointment(r) => r.service_type.iter().collect(),
            Self::DocumentReference(r) => r.type_.iter().collect(),
            Self::Patient(_)
            | Self::Organization(_)
            | Self::Practitioner(_)
            | Self::Schedule(_)
            | Self::Location(_)
            | Self::PractitionerRole(_) => Vec::new(),
        }
    }

    /// Every literal reference the resource makes (`Type/id`), for checks that a
    /// Bundle's references resolve.
    pub fn references(&self) -> Vec<&str> {
        references_of!(self, iter, as_ref, [])
            .into_iter()
            .filter_map(|r: &Reference| r.reference.as_deref())
            .collect()
    }

    /// Every reference the resource makes, to add to (a `display`, say).
    pub fn references_mut(&mut self) -> Vec<&mut Reference> {
        references_of!(self, iter_mut, as_mut, [mut])
    }

    /// Serialises to FHIR JSON.
    pub fn to_json(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cached, mapped or answered entry takes a `Resource`'s room, whatever its
    /// type: a field added inline to the largest (an Observation) grows them all. It was
    /// 944 bytes with each reference's identifier inline.
    #[test]
    fn a_resource_takes_at_most_752_bytes() {
        assert_eq!(std::mem::size_of::<Reference>(), 56);
        assert!(
            std::mem::size_of::<Resource>() <= 752,
            "{} bytes",
            std::mem::size_of::<Resource>()
        );
    }

    #[test]
    fn patient_serialises_as_uk_core_json() {
        let nhs = NhsNumber::parse("9690937278").unwrap();
        let p = Resource::Patient(Patient {
            id: nhs.to_string(),
            meta: Some(Meta::uk_core("Patient")),
            identifier: vec![Identifier::nhs_number(nhs, NhsVerification::Verified)],
            gender: Some("female".into()),
            birth_date: Some("1970-03-02".into()),
            ..Patient::default()
        });
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["resourceType"], "Patient");
        assert_eq!(
            v["meta"]["profile"][0],
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
        );
        assert_eq!(v["identifier"][0]["system"], NHS_NUMBER_SYSTEM);
        assert_eq!(
            v["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "01"
        );
        assert_eq!(v["birthDate"], "1970-03-02");
        assert!(
            v.get("name").is_none(),
            "empty arrays are omitted, never []"
        );
    }

    #[test]
    fn the_consultation_link_is_a_reference_with_its_r4_name() {
        let ms = Resource::MedicationStatement(MedicationStatement {
            id: "m1".into(),
            status: "active".into(),
            subject: Reference::to("Patient", "9690937278"),
            context: Some(Reference::to("Encounter", "c1")),
            ..MedicationStatement::default()
        });
        assert!(ms.references().contains(&"Encounter/c1"));
        let v: serde_json::Value = serde_json::from_slice(&ms.to_json()).unwrap();
        assert_eq!(v["context"]["reference"], "Encounter/c1");
        let obs = Resource::Observation(Observation {
            id: "o1".into(),
            encounter: Some(Reference::to("Encounter", "c1")),
            ..Observation::default()
        });
        assert!(obs.references().contains(&"Encounter/c1"));
        let v: serde_json::Value = serde_json::from_slice(&obs.to_json()).unwrap();
        assert_eq!(v["encounter"]["reference"], "Encounter/c1");
    }

    #[test]
    fn decimals_keep_their_form() {
        assert_eq!(serde_json::to_string(&Decimal(120.0)).unwrap(), "120");
        assert_eq!(serde_json::to_string(&Decimal(72.5)).unwrap(), "72.5");
    }
}
