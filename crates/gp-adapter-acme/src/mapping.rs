//! Acme Clinical JSON → UK Core R4. Pure functions, no I/O. A document is mapped whole
//! or not at all: anything missing or outside the format fails it with an
//! [`AcmeDataError`] naming the field (`items[2].onset`). The wire format is in this
//! crate's README.md.

use std::fmt;

use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::uk_local_from_utc;
use gp_adapter::uk_core::{self, meta};
use gp_adapter::{ClinicalType, PatientFlags, PatientRecord};
use gp_fhir::date::{PartialDate, parse_instant_utc};
use gp_fhir::model::{
    Address, CodeableConcept, Condition, HumanName, Identifier, NhsVerification, Observation,
    Organization, Patient, Practitioner, Quantity, Reference, Resource,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::AcmeDataError;

type Result<T> = std::result::Result<T, AcmeDataError>;

/// The clinical lists Acme keeps for a patient, one per FHIR type it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// The problem list → Condition.
    Problems,
    /// Measurements (weight, heart rate, …) → Observation.
    Measurements,
}

impl List {
    /// The clinical types Acme serves: what its lists hold, nothing else.
    pub const SERVED: &'static [ClinicalType] =
        &[ClinicalType::Condition, ClinicalType::Observation];

    /// The list holding `t`, when Acme keeps one.
    pub fn of(t: ClinicalType) -> Option<Self> {
        match t {
            ClinicalType::Condition => Some(Self::Problems),
            ClinicalType::Observation => Some(Self::Measurements),
            _ => None,
        }
    }

    /// Its path segment: `…/patients/{nhs}/{segment}`.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Problems => "problems",
            Self::Measurements => "measurements",
        }
    }
}

// ---- the native documents (README.md, "Wire format") -------------------------------
// Every field is required unless it is an `Option`: a record that leaves out whether it
// is sensitive or confidential is refused, never guessed.

#[derive(Deserialize)]
struct NPatient {
    nhs_number: String,
    nhs_number_status: String,
    revision: u64,
    name: NName,
    sex: String,
    birth_date: String,
    postcode: Option<String>,
    sensitive: bool,
    sharing_dissent: bool,
    practice: NPractice,
    usual_gp: Option<NClinician>,
}

#[derive(Deserialize)]
struct NName {
    title: Option<String>,
    given: Vec<String>,
    family: String,
}

#[derive(Deserialize)]
struct NPractice {
    ods_code: String,
    name: String,
}

#[derive(Deserialize)]
struct NClinician {
    id: String,
    name: NName,
    gmc_number: Option<String>,
}

#[derive(Deserialize)]
struct NList<T> {
    nhs_number: String,
    items: Vec<T>,
}

#[derive(Deserialize)]
struct NProblem {
    id: String,
    snomed: String,
    term: String,
    onset: String,
    status: String,
    confidential: bool,
}

#[derive(Deserialize)]
struct NMeasurement {
    id: String,
    snomed: String,
    term: String,
    taken_at: String,
    value: f64,
    unit: String,
    confidential: bool,
}

// ---- checks, each naming the field at fault -----------------------------------------

/// Where a field sits, for error messages: `birth_date`, or `items[2].onset` in a list.
#[derive(Clone, Copy)]
struct At(Option<usize>, &'static str);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "items[{i}].{}", self.1),
            None => f.write_str(self.1),
        }
    }
}

fn invalid(at: At, reason: impl Into<String>) -> AcmeDataError {
    AcmeDataError::Invalid {
        path: at.to_string(),
        reason: reason.into(),
    }
}

fn parse<T: DeserializeOwned>(document: &'static str, body: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(body).map_err(|e| AcmeDataError::NotUtf8 {
        document,
        offset: e.valid_up_to(),
    })?;
    serde_json::from_str(text).map_err(|e| AcmeDataError::Malformed {
        document,
        reason: e.to_string(),
    })
}

/// The document's NHS number, which must be the one asked for: an answer about someone
/// else is never passed on.
fn same_patient(raw: &str, asked: NhsNumber) -> Result<NhsNumber> {
    let at = At(None, "nhs_number");
    let nhs = NhsNumber::parse(raw).map_err(|e| invalid(at, e.to_string()))?;
    if nhs != asked {
        return Err(invalid(
            at,
            format!("the document is for {nhs}, but {asked} was asked for"),
        ));
    }
    Ok(nhs)
}

fn fhir_id(at: At, raw: &str) -> Result<String> {
    uk_core::guid_id(raw).ok_or_else(|| {
        invalid(
            at,
            format!("'{}' is not 1 to 64 of A-Z a-z 0-9 - .", shown(raw)),
        )
    })
}

/// A date of the precision Acme knew it to (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`), as is.
fn date(at: At, raw: &str) -> Result<String> {
    if raw.contains('T') {
        return Err(invalid(at, format!("'{}' is not a date", shown(raw))));
    }
    PartialDate::parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| invalid(at, e.to_string()))
}

/// A SNOMED CT concept id (6 to 18 digits) with its term.
fn snomed(at: At, code: &str, term: &str) -> Result<CodeableConcept> {
    let sctid = (6..=18).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit());
    if !sctid {
        return Err(invalid(
            at,
            format!("'{}' is not a SNOMED CT id", shown(code)),
        ));
    }
    Ok(terminology::coded(
        crate::SYSTEM,
        CodeScheme::Snomed,
        code,
        term,
        None,
    ))
}

fn human_name(at: At, n: &NName) -> Result<HumanName> {
    if n.family.trim().is_empty() {
        return Err(invalid(at, "the family name is empty"));
    }
    Ok(HumanName {
        use_: Some("official".into()),
        family: Some(n.family.clone()),
        given: n.given.clone(),
        prefix: n.title.iter().cloned().collect(),
    })
}

// ---- documents ------------------------------------------------------------------------

/// Maps a patient document (`GET …/practices/{ods}/patients/{nhs}`) to the Patient, its
/// practice and usual GP, its version and sharing flags. The document must be for `nhs`
/// at `ods`.
pub fn map_patient(body: &[u8], nhs: NhsNumber, ods: &OdsCode) -> Result<PatientRecord> {
    let p: NPatient = parse("patient document", body)?;
    let nhs = same_patient(&p.nhs_number, nhs)?;
    let status = At(None, "nhs_number_status");
    let verification = NhsVerification::from_code(&p.nhs_number_status).ok_or_else(|| {
        let code = shown(&p.nhs_number_status);
        invalid(status, format!("'{code}' is not a code 01 to 08"))
    })?;
    let at = At(None, "practice.ods_code");
    let practice = OdsCode::parse(&p.practice.ods_code).map_err(|e| invalid(at, e.to_string()))?;
    if practice != *ods {
        let reason = format!("the patient is registered at {practice}, but {ods} was asked for");
        return Err(invalid(at, reason));
    }
    let gender = match p.sex.as_str() {
        "male" | "female" | "other" | "unknown" => p.sex.clone(),
        other => {
            let reason = format!("'{}' is not male, female, other or unknown", shown(other));
            return Err(invalid(At(None, "sex"), reason));
        }
    };
    let practitioner = p.usual_gp.as_ref().map(map_clinician).transpose()?;
    let patient = Patient {
        id: nhs.to_string(),
        // A sensitive record is restricted; the gateway never releases it.
        meta: meta("Patient", p.sensitive),
        identifier: vec![Identifier::nhs_number(nhs, verification)],
        active: Some(true),
        name: vec![human_name(At(None, "name.family"), &p.name)?],
        gender: Some(gender),
        birth_date: Some(date(At(None, "birth_date"), &p.birth_date)?),
        address: p
            .postcode
            .map(|postcode| Address {
                use_: Some("home".into()),
                postal_code: Some(postcode),
                ..Address::default()
            })
            .into_iter()
            .collect(),
        general_practitioner: practitioner
            .iter()
            .map(|gp| Reference::to("Practitioner", &gp.id))
            .collect(),
        managing_organization: Some(Reference::to("Organization", practice.as_str())),
        ..Patient::default()
    };
    let organization = Organization {
        id: practice.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![Identifier::ods(&practice)],
        name: Some(p.practice.name),
        ..Organization::default()
    };
    Ok(PatientRecord {
        patient,
        organization: Some(organization),
        practitioner,
        version: p.revision.to_string(),
        flags: PatientFlags {
            restricted: p.sensitive,
            dissent: p.sharing_dissent,
        },
    })
}

/// Maps a clinician document (`GET …/practices/{ods}/clinicians/{id}`), as the patient
/// document's `usual_gp` is mapped.
pub fn map_clinician_document(body: &[u8]) -> Result<Practitioner> {
    map_clinician(&parse("clinician document", body)?)
}

fn map_clinician(c: &NClinician) -> Result<Practitioner> {
    Ok(Practitioner {
        id: fhir_id(At(None, "usual_gp.id"), &c.id)?,
        meta: meta("Practitioner", false),
        identifier: c
            .gmc_number
            .iter()
            .map(|n| uk_core::gmc_identifier(n))
            .collect(),
        name: vec![human_name(At(None, "usual_gp.name.family"), &c.name)?],
        gender: None,
    })
}

/// Maps one of a patient's lists (`GET …/patients/{nhs}/{list}`) to FHIR resources, in
/// Acme's order; the list must be `nhs`'s. Entries a clinician marked confidential carry
/// `meta.security` R (restricted): the gateway withholds them.
pub fn map_list(body: &[u8], list: List, nhs: NhsNumber) -> Result<Vec<Resource>> {
    match list {
        List::Problems => items(parse("problem list", body)?, nhs, problem),
        List::Measurements => items(parse("measurement list", body)?, nhs, measurement),
    }
}

/// Maps each item of a list, which must be `nhs`'s, with `map`.
fn items<T>(
    list: NList<T>,
    nhs: NhsNumber,
    map: fn(usize, &T, &Reference) -> Result<Resource>,
) -> Result<Vec<Resource>> {
    same_patient(&list.nhs_number, nhs)?;
    let subject = Reference::to("Patient", &nhs.to_string());
    let items = list.items.iter().enumerate();
    items.map(|(i, item)| map(i, item, &subject)).collect()
}

fn problem(i: usize, e: &NProblem, subject: &Reference) -> Result<Resource> {
    let at = |field| At(Some(i), field);
    let status = match e.status.as_str() {
        "active" => "active",
        "resolved" => "inactive",
        other => {
            let reason = format!("'{}' is not active or resolved", shown(other));
            return Err(invalid(at("status"), reason));
        }
    };
    Ok(Resource::Condition(Condition {
        id: fhir_id(at("id"), &e.id)?,
        meta: meta("Condition", e.confidential),
        clinical_status: Some(uk_core::condition_clinical_status(status)),
        verification_status: Some(uk_core::condition_confirmed()),
        category: vec![uk_core::problem_list_item()],
        code: snomed(at("snomed"), &e.snomed, &e.term)?,
        subject: subject.clone(),
        onset_date_time: Some(date(at("onset"), &e.onset)?),
        ..Condition::default()
    }))
}

fn measurement(i: usize, e: &NMeasurement, subject: &Reference) -> Result<Resource> {
    let at = |field| At(Some(i), field);
    // Acme records instants in UTC; UK Core answers UK local time with its offset.
    let (y, m, d, h, mi, s) =
        parse_instant_utc(&e.taken_at).map_err(|err| invalid(at("taken_at"), err.to_string()))?;
    if e.unit.trim().is_empty() {
        return Err(invalid(at("unit"), "the unit is empty"));
    }
    Ok(Resource::Observation(Observation {
        id: fhir_id(at("id"), &e.id)?,
        meta: meta("Observation", e.confidential),
        status: "final".into(),
        code: snomed(at("snomed"), &e.snomed, &e.term)?,
        subject: subject.clone(),
        effective_date_time: Some(uk_local_from_utc(y, m, d, h, mi, s)),
        value_quantity: Some(Quantity::ucum(e.value, &e.unit)),
        ..Observation::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nhs() -> NhsNumber {
        NhsNumber::parse("9993000019").unwrap()
    }

    #[test]
    fn measurements_are_answered_in_uk_local_time() {
        let body = br#"{"nhs_number":"9993000019","items":[{"id":"msr-1","snomed":"27113001",
            "term":"Body weight","taken_at":"2024-05-01T08:30:00Z","value":82.5,"unit":"kg",
            "confidential":true}]}"#;
        let [Resource::Observation(o)] = &map_list(body, List::Measurements, nhs()).unwrap()[..]
        else {
            panic!("one Observation");
        };
        assert_eq!(
            o.effective_date_time.as_deref(),
            Some("2024-05-01T09:30:00+01:00")
        );
        assert_eq!(
            o.meta.as_ref().unwrap().security[0].code.as_deref(),
            Some("R")
        );
    }

    #[test]
    fn bad_documents_name_the_field() {
        let refused = |body: &[u8]| {
            let mapped = map_list(body, List::Problems, nhs());
            mapped.unwrap_err().to_string()
        };
        assert_eq!(
            refused(br#"{"nhs_number":"9993000027","items":[]}"#),
            "nhs_number is invalid: the document is for 9993000027, but 9993000019 was asked for"
        );
        let onset = br#"{"nhs_number":"9993000019","items":[{"id":"p1","snomed":"195967001",
            "term":"Asthma","onset":"2009-13","status":"active","confidential":false}]}"#;
        assert_eq!(
            refused(onset),
            "items[0].onset is invalid: '2009-13' is not a real calendar date"
        );
        // Whether an entry is confidential is never guessed.
        let unsure = br#"{"nhs_number":"9993000019","items":[{"id":"p1","snomed":"195967001",
            "term":"Asthma","onset":"2009","status":"active"}]}"#;
        assert!(refused(unsure).contains("missing field `confidential`"));
        assert!(refused(b"{\"nhs_number\":\"\xC3\x28\"}").contains("not valid UTF-8"));
    }
}
