//! Microtest Evolution v2 JSON → UK Core R4. Pure functions, no I/O.
//!
//! Each document is mapped whole or not at all: a missing or malformed field fails it
//! with a [`MicrotestDataError`] naming the field (`entries[3].date.value`), so a caller
//! never sees a half-mapped resource. The format is `docs/native-formats/microtest.md`.
//! The FHIR produced is the same as gp-adapter-emis produces for the same facts.

use gp_fhir::text::shown;
use std::borrow::Cow;
use std::fmt;

use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::{fhir_date, fhir_year, local_date_time};
use gp_adapter::uk_core::{self, meta};
use gp_adapter::{
    AdapterError, ClinicalType, ContactDetails, NewObservation, PatientFlags, UtcDateTime,
};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Condition,
    ContactPoint, Decimal, Dosage, Encounter, EncounterParticipant, HumanName, Identifier,
    Immunization, ImmunizationPerformer, MedicationStatement, NhsVerification, Observation,
    Organization, Patient, PatientCommunication, Period, Practitioner, ProtocolApplied, Quantity,
    Reference, Resource, SDS_USER_ID_SYSTEM,
};
use gp_fhir::{NhsNumber, OdsCode};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::error::MicrotestDataError;

/// Base of the identifier systems holding Evolution ids (`{base}{type}-id`).
pub const MICROTEST_ID_BASE: &str = "https://microtest.co.uk/Id/";
/// GMC reference number of a doctor.
pub use gp_adapter::uk_core::GMC_SYSTEM;

type Result<T> = std::result::Result<T, MicrotestDataError>;

/// The kinds of clinical entry Evolution serves (`…/entries?type=…`), one per FHIR type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    Allergy,
    Medication,
    Problem,
    Observation,
    Immunisation,
    Consultation,
}

impl EntryType {
    /// The `type` query value and entry field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allergy => "allergy",
            Self::Medication => "medication",
            Self::Problem => "problem",
            Self::Observation => "observation",
            Self::Immunisation => "immunisation",
            Self::Consultation => "consultation",
        }
    }

    /// The entry type holding a FHIR clinical type.
    pub fn for_clinical(t: ClinicalType) -> Self {
        match t {
            ClinicalType::AllergyIntolerance => Self::Allergy,
            ClinicalType::MedicationStatement => Self::Medication,
            ClinicalType::Condition => Self::Problem,
            ClinicalType::Observation => Self::Observation,
            ClinicalType::Immunization => Self::Immunisation,
            ClinicalType::Encounter => Self::Consultation,
        }
    }
}

// ---- native documents (private: only this module knows the wire shape) -------------
//
// Every field is optional to serde so that a missing one is reported by path below;
// unknown fields are ignored (vendors add fields).

#[derive(Deserialize)]
struct NIndex {
    patients: Option<Vec<NSummary>>,
}

#[derive(Deserialize)]
struct NSummary {
    patient_id: Option<String>,
    nhs_number: Option<String>,
}

#[derive(Deserialize)]
struct NDate<'a> {
    #[serde(borrow)]
    value: Option<Text<'a>>,
    #[serde(borrow)]
    precision: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct NCode<'a> {
    #[serde(borrow)]
    read: Option<Text<'a>>,
    #[serde(borrow)]
    snomed: Option<Text<'a>>,
    #[serde(borrow)]
    dmd: Option<Text<'a>>,
    #[serde(borrow)]
    term: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct NAddress {
    lines: Option<Vec<String>>,
    town: Option<String>,
    county: Option<String>,
    postcode: Option<String>,
}

#[derive(Deserialize)]
struct NLanguage {
    code: Option<String>,
}

#[derive(Deserialize)]
struct NSite {
    site_id: Option<String>,
    ods_code: Option<String>,
    name: Option<String>,
    address: Option<NAddress>,
    phone: Option<String>,
}

#[derive(Deserialize)]
struct NPatient<'a> {
    patient_id: Option<String>,
    family_name: Option<String>,
    given_names: Option<Vec<String>>,
    title: Option<String>,
    nhs_number: Option<String>,
    nhs_number_status: Option<String>,
    sex: Option<String>,
    #[serde(borrow)]
    date_of_birth: Option<NDate<'a>>,
    #[serde(borrow)]
    date_of_death: Option<NDate<'a>>,
    address: Option<NAddress>,
    home_phone: Option<String>,
    mobile_phone: Option<String>,
    email: Option<String>,
    usual_clinician_id: Option<String>,
    restricted: Option<bool>,
    sharing_dissent: Option<bool>,
    preferred_language: Option<NLanguage>,
    #[serde(borrow)]
    last_modified: Option<NDate<'a>>,
    site: Option<NSite>,
}

#[derive(Deserialize)]
struct NClinician {
    clinician_id: Option<String>,
    title: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    sex: Option<String>,
    sds_user_id: Option<String>,
    gmc_number: Option<String>,
}

#[derive(Deserialize)]
struct NPage<'a> {
    #[serde(borrow)]
    entries: Option<Vec<NEntry<'a>>>,
    total: Option<u64>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct NReading<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    value: Option<Text<'a>>,
    #[serde(borrow)]
    unit: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct NEntry<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    date: Option<NDate<'a>>,
    #[serde(borrow)]
    clinician_id: Option<Text<'a>>,
    #[serde(borrow)]
    consultation_id: Option<Text<'a>>,
    confidential: Option<bool>,
    #[serde(borrow)]
    code: Option<NCode<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    #[serde(borrow)]
    end_date: Option<NDate<'a>>,
    // allergy
    #[serde(borrow)]
    category: Option<Text<'a>>,
    #[serde(borrow)]
    reaction: Option<NCode<'a>>,
    #[serde(borrow)]
    severity: Option<Text<'a>>,
    // medication
    #[serde(borrow)]
    drug: Option<NCode<'a>>,
    #[serde(borrow)]
    dosage: Option<Text<'a>>,
    #[serde(borrow)]
    quantity: Option<Text<'a>>,
    #[serde(borrow)]
    quantity_unit: Option<Text<'a>>,
    #[serde(borrow)]
    prescription_type: Option<Text<'a>>,
    // problem
    #[serde(borrow)]
    significance: Option<Text<'a>>,
    // observation
    #[serde(borrow)]
    value: Option<Text<'a>>,
    #[serde(borrow)]
    unit: Option<Text<'a>>,
    #[serde(borrow)]
    systolic: Option<NReading<'a>>,
    #[serde(borrow)]
    diastolic: Option<NReading<'a>>,
    // immunisation
    #[serde(borrow)]
    batch: Option<Text<'a>>,
    #[serde(borrow)]
    dose: Option<Text<'a>>,
    // consultation
    #[serde(borrow)]
    duration_minutes: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct NProblem {
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

/// Native text as it stands in the body: borrowed, and owned only when the JSON string
/// held escapes. Per-entry fields are read as this, so mapping a page allocates only for
/// what the FHIR resources keep.
struct Text<'a>(Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            // As serde's own String visitor says, so type errors read as they always have.
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(V).map(Text)
    }
}

// ---- results -------------------------------------------------------------------------

/// A mapped patient document.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedPatient {
    pub nhs_number: NhsNumber,
    pub ods: OdsCode,
    pub patient: Patient,
    pub organization: Organization,
    /// `usual_clinician_id`, to fetch the usual GP with.
    pub usual_clinician_id: Option<String>,
    /// `last_modified` as a FHIR instant: changes whenever demographics change.
    pub version: String,
    pub flags: PatientFlags,
}

/// One mapped page of entries.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedPage {
    /// The page's resources (a blood pressure entry gives two Observations).
    pub resources: Vec<Resource>,
    /// Native entries on the page.
    pub entries: usize,
    /// Native entries across all pages, when the page says.
    pub total: Option<u64>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// An Evolution problem+json error document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NativeProblem {
    pub code: String,
    pub title: String,
    pub detail: String,
}

// ---- parsing helpers -----------------------------------------------------------------

fn parse<'a, T: Deserialize<'a>>(document: &'static str, body: &'a [u8]) -> Result<T> {
    let text = std::str::from_utf8(body).map_err(|e| MicrotestDataError::NotUtf8 {
        document,
        offset: e.valid_up_to(),
    })?;
    serde_json::from_str(text).map_err(|e| MicrotestDataError::MalformedJson {
        document,
        reason: e.to_string(),
    })
}

/// Reads a problem+json error body, if it is one.
pub fn parse_problem(body: &[u8]) -> Option<NativeProblem> {
    let p: NProblem = serde_json::from_slice(body).ok()?;
    Some(NativeProblem {
        code: p.code?,
        title: p.title.unwrap_or_default(),
        detail: p.detail.unwrap_or_default(),
    })
}

/// Where a field sits, for error messages (`entries[3].code`); built only on error.
#[derive(Clone, Copy)]
struct At<'a> {
    prefix: &'a str,
    index: Option<usize>,
}

impl<'a> At<'a> {
    const ROOT: At<'static> = At {
        prefix: "",
        index: None,
    };
    fn field(prefix: &'a str) -> Self {
        Self {
            prefix,
            index: None,
        }
    }
    fn nth(prefix: &'a str, index: usize) -> Self {
        Self {
            prefix,
            index: Some(index),
        }
    }
    fn path(&self, field: &str) -> String {
        match (self.prefix, self.index) {
            ("", _) => field.to_owned(),
            (p, Some(i)) => format!("{p}[{i}].{field}"),
            (p, None) => format!("{p}.{field}"),
        }
    }
    fn missing(&self, field: &str) -> MicrotestDataError {
        MicrotestDataError::Missing {
            path: self.path(field),
        }
    }
    fn invalid(&self, field: &str, reason: impl Into<String>) -> MicrotestDataError {
        MicrotestDataError::Invalid {
            path: self.path(field),
            reason: reason.into(),
        }
    }
}

/// Trimmed text; `None` when absent, `null` or empty.
fn opt(v: &Option<impl AsRef<str>>) -> Option<&str> {
    v.as_ref()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
}

fn req<'v>(at: &At, field: &str, v: &'v Option<impl AsRef<str>>) -> Result<&'v str> {
    opt(v).ok_or_else(|| at.missing(field))
}

fn owned(v: &Option<impl AsRef<str>>) -> Option<String> {
    opt(v).map(str::to_owned)
}

fn valid_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An Evolution id, used as the FHIR id as it is: 1-64 of `A-Z a-z 0-9 - .`.
fn id(at: &At, field: &str, v: &Option<impl AsRef<str>>) -> Result<String> {
    let raw = req(at, field, v)?;
    valid_id(raw)
        .then(|| raw.to_owned())
        .ok_or_else(|| at.invalid(field, format!("'{}' is not a valid id", shown(raw))))
}

fn opt_id(at: &At, field: &str, v: &Option<impl AsRef<str>>) -> Result<Option<String>> {
    match opt(v) {
        None => Ok(None),
        Some(_) => id(at, field, v).map(Some),
    }
}

/// A number sent as a string (`"120"`, `"72.5"`).
fn number(at: &At, field: &str, v: &str) -> Result<f64> {
    number_value(v).ok_or_else(|| at.invalid(field, format!("'{}' is not a number", shown(v))))
}

fn number_value(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn one_of<'v>(at: &At, field: &str, v: &str, allowed: &[(&str, &'v str)]) -> Result<&'v str> {
    allowed
        .iter()
        .find(|(native, _)| *native == v)
        .map(|(_, mapped)| *mapped)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            at.invalid(
                field,
                format!("'{}' is not one of {}", shown(v), names.join(", ")),
            )
        })
}

fn opt_one_of<'v>(
    at: &At,
    field: &str,
    v: &Option<impl AsRef<str>>,
    allowed: &[(&str, &'v str)],
) -> Result<Option<&'v str>> {
    opt(v).map(|s| one_of(at, field, s, allowed)).transpose()
}

// ---- dates ---------------------------------------------------------------------------

fn digits(s: &str, r: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(r)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn ymd(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (
        i32::try_from(digits(s, 0..4)?).ok()?,
        u8::try_from(digits(s, 5..7)?).ok()?,
        u8::try_from(digits(s, 8..10)?).ok()?,
    );
    ((1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && d >= 1
        && d <= gp_fhir::date::days_in_month(y, m))
    .then_some((y, m, d))
}

fn hms(s: &str) -> Option<(u8, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (
        u8::try_from(digits(s, 0..2)?).ok()?,
        u8::try_from(digits(s, 3..5)?).ok()?,
        u8::try_from(digits(s, 6..8)?).ok()?,
    );
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

/// An Evolution date object → FHIR date/dateTime at its precision; `datetime` values are
/// UK local time and get their offset (`+00:00` GMT, `+01:00` BST).
fn date(at: &At, field: &str, d: &Option<NDate<'_>>) -> Result<Option<String>> {
    let Some(d) = d else {
        return Ok(None);
    };
    // Paths are built only on error: a record has a date on nearly every entry.
    let value = opt(&d.value).ok_or_else(|| at.missing(&format!("{field}.value")))?;
    let precision = opt(&d.precision).ok_or_else(|| at.missing(&format!("{field}.precision")))?;
    let bad = || {
        at.invalid(
            &format!("{field}.value"),
            format!(
                "'{}' is not a date of precision {}",
                shown(value),
                shown(precision)
            ),
        )
    };
    let fhir = match precision {
        "year" => {
            let y = digits(value, 0..4).filter(|y| *y >= 1 && value.len() == 4);
            y.and_then(|y| i32::try_from(y).ok()).map(fhir_year)
        }
        "month" => {
            let ok = value.len() == 7
                && value.as_bytes()[4] == b'-'
                && digits(value, 0..4).is_some_and(|y| y >= 1)
                && digits(value, 5..7).is_some_and(|m| (1..=12).contains(&m));
            ok.then(|| value.to_owned())
        }
        "day" => ymd(value).map(|(y, m, d)| fhir_date(y, m, d)),
        "datetime" => value.split_once('T').and_then(|(day, time)| {
            let (y, m, d) = ymd(day)?;
            let (h, mi, s) = hms(time)?;
            Some(local_date_time(y, m, d, (h, mi, s)))
        }),
        other => {
            return Err(at.invalid(
                &format!("{field}.precision"),
                format!("'{}' is not year, month, day or datetime", shown(other)),
            ));
        }
    };
    fhir.map(Some).ok_or_else(bad)
}

fn req_date(at: &At, field: &str, d: &Option<NDate<'_>>) -> Result<String> {
    date(at, field, d)?.ok_or_else(|| at.missing(field))
}

// ---- shared pieces -------------------------------------------------------------------

/// `{MICROTEST_ID_BASE}{kind}-id`; the systems are constants so an entry's identifier
/// costs no formatting.
fn microtest_id(kind: &str, id: &str) -> Identifier {
    let system = match kind {
        "site" => "https://microtest.co.uk/Id/site-id",
        "patient" => "https://microtest.co.uk/Id/patient-id",
        "clinician" => "https://microtest.co.uk/Id/clinician-id",
        "allergy" => "https://microtest.co.uk/Id/allergy-id",
        "medication" => "https://microtest.co.uk/Id/medication-id",
        "problem" => "https://microtest.co.uk/Id/problem-id",
        "observation" => "https://microtest.co.uk/Id/observation-id",
        "immunisation" => "https://microtest.co.uk/Id/immunisation-id",
        "consultation" => "https://microtest.co.uk/Id/consultation-id",
        other => return Identifier::new(&format!("{MICROTEST_ID_BASE}{other}-id"), id),
    };
    Identifier::new(system, id)
}

fn gender(at: &At, v: &Option<impl AsRef<str>>) -> Result<Option<String>> {
    opt_one_of(
        at,
        "sex",
        v,
        &[
            ("M", "male"),
            ("F", "female"),
            ("X", "other"),
            ("U", "unknown"),
        ],
    )
    .map(|g| g.map(str::to_owned))
}

fn human_name(
    title: &Option<impl AsRef<str>>,
    given: impl Iterator<Item = String>,
    family: &Option<impl AsRef<str>>,
) -> Option<HumanName> {
    let family = owned(family);
    let given: Vec<String> = given.collect();
    (family.is_some() || !given.is_empty()).then(|| HumanName {
        use_: Some("official".into()),
        family,
        given,
        prefix: owned(title).into_iter().collect(),
    })
}

fn address(a: &Option<NAddress>) -> Option<Address> {
    let a = a.as_ref()?;
    let addr = Address {
        use_: None,
        line: a
            .lines
            .iter()
            .flatten()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        city: owned(&a.town),
        district: owned(&a.county),
        postal_code: owned(&a.postcode),
        country: None,
    };
    (addr != Address::default()).then_some(addr)
}

fn contact(
    value: &Option<impl AsRef<str>>,
    system: &str,
    use_: Option<&str>,
) -> Option<ContactPoint> {
    opt(value).map(|v| ContactPoint {
        system: Some(system.to_owned()),
        value: Some(v.to_owned()),
        use_: use_.map(str::to_owned),
    })
}

fn practitioner_ref(id: Option<String>) -> Option<Reference> {
    id.map(|i| Reference::to("Practitioner", &i))
}

/// True for a Read v2 code: 5 characters of `A-Z a-z 0-9 .`.
fn is_read2(c: &str) -> bool {
    c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// A UK Core HumanLanguage code: 2 to 3 letters or digits (`cy`, `q4`), maybe a region (`zh-HK`).
fn is_language_code(c: &str) -> bool {
    let mut parts = c.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn is_sctid(c: &str) -> bool {
    (6..=18).contains(&c.len()) && !c.starts_with('0') && c.bytes().all(|b| b.is_ascii_digit())
}

/// An Evolution code object (`{"read": "H33..", "term": "Asthma"}`, or `snomed`/`dmd`
/// instead of `read`) → CodeableConcept via the gateway's terminology maps.
fn coded(at: &At, field: &str, c: &Option<NCode<'_>>) -> Result<Option<CodeableConcept>> {
    let Some(c) = c else {
        return Ok(None);
    };
    let term = opt(&c.term).unwrap_or_default();
    let (scheme, key, value) = match (opt(&c.read), opt(&c.snomed), opt(&c.dmd)) {
        (Some(r), None, None) => (CodeScheme::ReadV2, "read", r),
        (None, Some(s), None) => (CodeScheme::Snomed, "snomed", s),
        (None, None, Some(d)) => (CodeScheme::Dmd, "dmd", d),
        (None, None, None) => {
            return Err(at.invalid(field, "has no read, snomed or dmd code"));
        }
        _ => {
            return Err(at.invalid(
                field,
                "has more than one of read, snomed and dmd; expected exactly one",
            ));
        }
    };
    let ok = match scheme {
        CodeScheme::ReadV2 => is_read2(value),
        _ => is_sctid(value),
    };
    if !ok {
        let what = if scheme == CodeScheme::ReadV2 {
            "a Read v2 code (5 characters, trailing dots)"
        } else {
            "a SNOMED CT / dm+d id"
        };
        return Err(at.invalid(
            &format!("{field}.{key}"),
            format!("'{}' is not {what}", shown(value)),
        ));
    }
    Ok(Some(terminology::coded(scheme, value, term, None)))
}

fn req_coded(at: &At, field: &str, c: &Option<NCode<'_>>) -> Result<CodeableConcept> {
    coded(at, field, c)?.ok_or_else(|| at.missing(field))
}

fn quantity(at: &At, field: &str, value: &str, unit: &Option<impl AsRef<str>>) -> Result<Quantity> {
    Ok(quantity_of(number(at, field, value)?, unit))
}

fn quantity_of(v: f64, unit: &Option<impl AsRef<str>>) -> Quantity {
    match opt(unit) {
        Some(u) => Quantity::ucum(v, u),
        None => Quantity {
            value: Decimal(v),
            unit: None,
            system: None,
            code: None,
        },
    }
}

// ---- documents -----------------------------------------------------------------------

/// Reads the patient index (`GET …/patients?nhs_number=`): the Evolution patient id of
/// `nhs` at `site`, or `None` when it holds no such patient. Two or more is an error: the
/// gateway must never guess which record is the patient's.
pub fn parse_patient_index(body: &[u8], nhs: NhsNumber, site: &OdsCode) -> Result<Option<String>> {
    let index: NIndex = parse("patient index", body)?;
    let patients = index.patients.ok_or_else(|| At::ROOT.missing("patients"))?;
    let mut found = Vec::with_capacity(patients.len());
    for (i, s) in patients.iter().enumerate() {
        let at = At::nth("patients", i);
        let patient_id = id(&at, "patient_id", &s.patient_id)?;
        let raw = req(&at, "nhs_number", &s.nhs_number)?;
        let listed = NhsNumber::parse(raw).map_err(|e| at.invalid("nhs_number", e.to_string()))?;
        if listed != nhs {
            return Err(at.invalid(
                "nhs_number",
                format!("the index lists {listed}, but {nhs} was asked for"),
            ));
        }
        found.push(patient_id);
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        count => Err(MicrotestDataError::AmbiguousNhsNumber {
            nhs_number: nhs.to_string(),
            site: site.to_string(),
            count,
        }),
    }
}

/// Maps a patient document (`GET …/patients/{id}`) to Patient and Organization.
pub fn map_patient(body: &[u8]) -> Result<MappedPatient> {
    let p: NPatient = parse("patient", body)?;
    let at = At::ROOT;
    let raw_nhs = req(&at, "nhs_number", &p.nhs_number)?;
    let compact: String = raw_nhs.chars().filter(|c| *c != ' ').collect();
    let nhs = NhsNumber::parse(&compact).map_err(|e| at.invalid("nhs_number", e.to_string()))?;
    let status = req(&at, "nhs_number_status", &p.nhs_number_status)?;
    let verification = NhsVerification::from_code(status).ok_or_else(|| {
        at.invalid(
            "nhs_number_status",
            format!("'{}' is not a code 01 to 08", shown(status)),
        )
    })?;
    let patient_id = id(&at, "patient_id", &p.patient_id)?;
    req(&at, "family_name", &p.family_name)?;
    let version = req_date(&at, "last_modified", &p.last_modified)?;
    if version.len() < 20 {
        return Err(at.invalid(
            "last_modified.precision",
            "last_modified must have precision datetime",
        ));
    }
    let restricted = p.restricted.unwrap_or(false);
    let dissent = p.sharing_dissent.unwrap_or(false);
    let usual = opt_id(&at, "usual_clinician_id", &p.usual_clinician_id)?;
    let language = match &p.preferred_language {
        None => None,
        Some(l) => {
            let code = req(&at, "preferred_language.code", &l.code)?;
            if !is_language_code(code) {
                return Err(at.invalid(
                    "preferred_language.code",
                    format!("'{}' is not a language code", shown(code)),
                ));
            }
            Some(PatientCommunication::preferred(code))
        }
    };

    let site = p.site.as_ref().ok_or_else(|| at.missing("site"))?;
    let site_at = At::field("site");
    let raw_ods = req(&site_at, "ods_code", &site.ods_code)?;
    let ods = OdsCode::parse(raw_ods).map_err(|e| site_at.invalid("ods_code", e.to_string()))?;
    let organization = Organization {
        id: ods.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![
            Identifier::ods(&ods),
            microtest_id("site", &id(&site_at, "site_id", &site.site_id)?),
        ],
        name: owned(&site.name),
        telecom: contact(&site.phone, "phone", Some("work"))
            .into_iter()
            .collect(),
        address: address(&site.address).into_iter().collect(),
    };

    let given = p
        .given_names
        .iter()
        .flatten()
        .flat_map(|g| g.split_whitespace())
        .map(str::to_owned);
    let mut telecom = Vec::new();
    telecom.extend(contact(&p.home_phone, "phone", Some("home")));
    telecom.extend(contact(&p.mobile_phone, "phone", Some("mobile")));
    telecom.extend(contact(&p.email, "email", None));
    let patient = Patient {
        id: nhs.to_string(),
        meta: meta("Patient", restricted),
        identifier: vec![
            Identifier::nhs_number(nhs, verification),
            microtest_id("patient", &patient_id),
        ],
        active: Some(true),
        name: human_name(&p.title, given, &p.family_name)
            .into_iter()
            .collect(),
        telecom,
        gender: gender(&at, &p.sex)?,
        birth_date: Some(req_date(&at, "date_of_birth", &p.date_of_birth)?),
        deceased_date_time: date(&at, "date_of_death", &p.date_of_death)?,
        address: address(&p.address)
            .map(|a| Address {
                use_: Some("home".into()),
                ..a
            })
            .into_iter()
            .collect(),
        general_practitioner: practitioner_ref(usual.clone()).into_iter().collect(),
        managing_organization: Some(Reference::to("Organization", ods.as_str())),
        communication: language.into_iter().collect(),
    };
    Ok(MappedPatient {
        nhs_number: nhs,
        ods,
        patient,
        organization,
        usual_clinician_id: usual,
        version,
        flags: PatientFlags {
            restricted,
            dissent,
        },
    })
}

/// Maps a clinician document (`GET …/clinicians/{id}`) to a Practitioner.
pub fn map_clinician(body: &[u8]) -> Result<Practitioner> {
    let c: NClinician = parse("clinician", body)?;
    let at = At::ROOT;
    let id = id(&at, "clinician_id", &c.clinician_id)?;
    let mut identifier = vec![microtest_id("clinician", &id)];
    identifier.extend(opt(&c.sds_user_id).map(|s| Identifier::new(SDS_USER_ID_SYSTEM, s)));
    identifier.extend(opt(&c.gmc_number).map(uk_core::gmc_identifier));
    let given = opt(&c.given_name)
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(str::to_owned);
    Ok(Practitioner {
        meta: meta("Practitioner", false),
        identifier,
        name: human_name(&c.title, given, &c.family_name)
            .into_iter()
            .collect(),
        gender: gender(&at, &c.sex)?,
        id,
    })
}

/// A cursor is sent back as a query value, so it must be URL-safe as it stands.
fn check_cursor(kind: EntryType, cursor: &str) -> Result<()> {
    let ok = (1..=512).contains(&cursor.len())
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(MicrotestDataError::BrokenCursor {
            what: kind.as_str().to_owned(),
            reason: format!(
                "next_cursor '{}' is empty, too long or not URL-safe",
                shown(cursor)
            ),
        })
    }
}

/// Maps one page of entries (`GET …/entries?type=…`) for the patient `nhs` at `ods`.
pub fn map_entries(
    body: &[u8],
    kind: EntryType,
    nhs: NhsNumber,
    ods: &OdsCode,
) -> Result<MappedPage> {
    let page: NPage = parse("entries page", body)?;
    let entries = page.entries.ok_or_else(|| At::ROOT.missing("entries"))?;
    if let Some(c) = page.next_cursor.as_deref() {
        check_cursor(kind, c)?;
    }
    let ctx = Ctx {
        patient_ref: Reference::to("Patient", &nhs.to_string()),
        org_ref: Reference::to("Organization", ods.as_str()),
    };
    let mut resources = Vec::with_capacity(entries.len() + entries.len() / 4);
    for (i, e) in entries.iter().enumerate() {
        let at = At::nth("entries", i);
        let found = req(&at, "type", &e.kind)?;
        if found != kind.as_str() {
            return Err(at.invalid(
                "type",
                format!("'{}' on a page of {} entries", shown(found), kind.as_str()),
            ));
        }
        map_entry(&ctx, &at, kind, e, &mut resources)?;
    }
    Ok(MappedPage {
        resources,
        entries: entries.len(),
        total: page.total,
        next_cursor: page.next_cursor,
    })
}

struct Ctx {
    patient_ref: Reference,
    org_ref: Reference,
}

/// `Encounter/{consultation_id}`: ids are used as they are, so this is the id the
/// consultation entry's Encounter gets.
fn encounter_ref(at: &At, e: &NEntry<'_>) -> Result<Option<Reference>> {
    opt_ref(at, "consultation_id", &e.consultation_id, "Encounter")
}

/// `{resource_type}/{id}` for an optional id field, checked as [`opt_id`] checks it,
/// built straight from the native text.
fn opt_ref(
    at: &At,
    field: &str,
    v: &Option<impl AsRef<str>>,
    resource_type: &str,
) -> Result<Option<Reference>> {
    match opt(v) {
        None => Ok(None),
        Some(raw) if valid_id(raw) => Ok(Some(Reference::to(resource_type, raw))),
        Some(_) => id(at, field, v).map(|_| None),
    }
}

fn map_entry(
    ctx: &Ctx,
    at: &At,
    kind: EntryType,
    e: &NEntry<'_>,
    out: &mut Vec<Resource>,
) -> Result<()> {
    let id = id(at, "id", &e.id)?;
    let confidential = e.confidential.unwrap_or(false);
    let author = opt_ref(at, "clinician_id", &e.clinician_id, "Practitioner")?;
    match kind {
        EntryType::Allergy => out.push(Resource::AllergyIntolerance(map_allergy(
            ctx,
            at,
            e,
            id,
            confidential,
            author,
        )?)),
        EntryType::Medication => out.push(Resource::MedicationStatement(map_medication(
            ctx,
            at,
            e,
            id,
            confidential,
            author,
        )?)),
        EntryType::Problem => out.push(map_problem(ctx, at, e, id, confidential, author)?),
        EntryType::Observation => map_observation(ctx, at, e, id, confidential, author, out)?,
        EntryType::Immunisation => {
            out.push(map_immunisation(ctx, at, e, id, confidential, author)?);
        }
        EntryType::Consultation => {
            out.push(map_consultation(ctx, at, e, id, confidential, author)?);
        }
    }
    Ok(())
}

fn map_allergy(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
) -> Result<AllergyIntolerance> {
    let category = opt_one_of(
        at,
        "category",
        &e.category,
        &[
            ("drug", "medication"),
            ("food", "food"),
            ("environment", "environment"),
        ],
    )?;
    let status = one_of(
        at,
        "status",
        req(at, "status", &e.status)?,
        &[("active", "active"), ("resolved", "resolved")],
    )?;
    let severity = opt_one_of(
        at,
        "severity",
        &e.severity,
        &[
            ("mild", "mild"),
            ("moderate", "moderate"),
            ("severe", "severe"),
        ],
    )?;
    // FHIR needs a manifestation for a reaction, so a severity alone is not emitted.
    let reaction = coded(at, "reaction", &e.reaction)?.map(|m| AllergyReaction {
        manifestation: vec![m],
        severity: severity.map(str::to_owned),
    });
    let ended = date(at, "end_date", &e.end_date)?;
    Ok(AllergyIntolerance {
        encounter: encounter_ref(at, e)?,
        meta: meta("AllergyIntolerance", confidential),
        identifier: vec![microtest_id("allergy", &id)],
        clinical_status: Some(uk_core::allergy_clinical_status(status)),
        verification_status: Some(uk_core::allergy_confirmed()),
        category: category.map(str::to_owned).into_iter().collect(),
        code: req_coded(at, "code", &e.code)?,
        patient: ctx.patient_ref.clone(),
        onset_date_time: date(at, "date", &e.date)?,
        recorder: author,
        reaction: reaction.into_iter().collect(),
        // R4 AllergyIntolerance has no end date element; keep it readable rather than lose it.
        note: ended
            .map(|d| Annotation {
                text: format!("Ended {d}"),
            })
            .into_iter()
            .collect(),
        id,
        ..AllergyIntolerance::default()
    })
}

fn map_medication(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
) -> Result<MedicationStatement> {
    let status = one_of(
        at,
        "status",
        req(at, "status", &e.status)?,
        &[
            ("active", "active"),
            ("completed", "completed"),
            ("cancelled", "stopped"),
        ],
    )?;
    let start = date(at, "date", &e.date)?;
    let end = date(at, "end_date", &e.end_date)?;
    let kind = opt_one_of(
        at,
        "prescription_type",
        &e.prescription_type,
        &[("acute", "Acute"), ("repeat", "Repeat")],
    )?;
    let quantity = match opt(&e.quantity) {
        None => None,
        Some(q) => {
            number(at, "quantity", q)?;
            Some(match opt(&e.quantity_unit) {
                Some(u) => format!("{q} {u}"),
                None => q.to_owned(),
            })
        }
    };
    let note = match (kind, quantity) {
        (None, None) => None,
        (Some(k), None) => Some(format!("{k} prescription")),
        (None, Some(q)) => Some(format!("Quantity {q}")),
        (Some(k), Some(q)) => Some(format!("{k} prescription, quantity {q}")),
    };
    Ok(MedicationStatement {
        context: encounter_ref(at, e)?,
        meta: meta("MedicationStatement", confidential),
        identifier: vec![microtest_id("medication", &id)],
        status: status.into(),
        medication_codeable_concept: req_coded(at, "drug", &e.drug)?,
        subject: ctx.patient_ref.clone(),
        effective_period: (start.is_some() || end.is_some()).then(|| Period {
            start: start.clone(),
            end,
        }),
        date_asserted: start,
        information_source: author,
        dosage: owned(&e.dosage)
            .map(|d| Dosage {
                text: Some(d),
                patient_instruction: None,
            })
            .into_iter()
            .collect(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
        id,
    })
}

fn map_problem(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
) -> Result<Resource> {
    let status = one_of(
        at,
        "status",
        req(at, "status", &e.status)?,
        &[("active", "active"), ("past", "inactive")],
    )?;
    // Not mapped (as for EMIS), but still checked: a value outside the format is a fault.
    opt_one_of(
        at,
        "significance",
        &e.significance,
        &[("major", "major"), ("minor", "minor")],
    )?;
    Ok(Resource::Condition(Condition {
        encounter: encounter_ref(at, e)?,
        meta: meta("Condition", confidential),
        identifier: vec![microtest_id("problem", &id)],
        clinical_status: Some(uk_core::condition_clinical_status(status)),
        verification_status: Some(uk_core::condition_confirmed()),
        category: vec![uk_core::problem_list_item()],
        code: req_coded(at, "code", &e.code)?,
        subject: ctx.patient_ref.clone(),
        onset_date_time: date(at, "date", &e.date)?,
        abatement_date_time: date(at, "end_date", &e.end_date)?,
        recorder: author,
        id,
        ..Condition::default()
    }))
}

/// One Observation; a blood pressure entry (`systolic`/`diastolic`) becomes two, the
/// systolic and the diastolic reading, exactly as EMIS records them.
fn map_observation(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
    out: &mut Vec<Resource>,
) -> Result<()> {
    let effective = date(at, "date", &e.date)?;
    let code = req_coded(at, "code", &e.code)?;
    let encounter = encounter_ref(at, e)?;
    let observation = |id: String, code: CodeableConcept, value: Option<Quantity>| {
        Resource::Observation(Observation {
            meta: meta("Observation", confidential),
            identifier: vec![microtest_id("observation", &id)],
            id,
            status: "final".into(),
            code,
            subject: ctx.patient_ref.clone(),
            encounter: encounter.clone(),
            effective_date_time: effective.clone(),
            performer: author.clone().into_iter().collect(),
            value_quantity: value,
            ..Observation::default()
        })
    };
    if e.systolic.is_none() && e.diastolic.is_none() {
        let value = opt(&e.value)
            .map(|v| quantity(at, "value", v, &e.unit))
            .transpose()?;
        out.push(observation(id, code, value));
        return Ok(());
    }
    if opt(&e.value).is_some() {
        return Err(at.invalid(
            "value",
            "a blood pressure entry carries systolic and diastolic, not value",
        ));
    }
    let mut ids: Vec<String> = Vec::with_capacity(2);
    for (field, reading, read, term) in [
        ("systolic", &e.systolic, "2469.", "Systolic blood pressure"),
        (
            "diastolic",
            &e.diastolic,
            "246A.",
            "Diastolic blood pressure",
        ),
    ] {
        let Some(r) = reading else { continue };
        let r_at = At::field(field);
        // The systolic reading is keyed by the entry's own id; the diastolic by its own.
        // Paths are built only on error (`r_at.path` formats).
        let rid = match (field, opt(&r.id)) {
            ("systolic", None) => id.clone(),
            (_, Some(raw)) if valid_id(raw) => raw.to_owned(),
            _ => self::id(at, &r_at.path("id"), &r.id)?,
        };
        if ids.contains(&rid) {
            return Err(at.invalid(
                &r_at.path("id"),
                format!("'{rid}' is the id of the other reading too"),
            ));
        }
        let value = opt(&r.value).ok_or_else(|| at.missing(&r_at.path("value")))?;
        let value = match number_value(value) {
            Some(v) => quantity_of(v, &r.unit),
            None => quantity(at, &r_at.path("value"), value, &r.unit)?,
        };
        out.push(observation(
            rid.clone(),
            terminology::coded(CodeScheme::ReadV2, read, term, None),
            Some(value),
        ));
        ids.push(rid);
    }
    Ok(())
}

fn map_immunisation(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
) -> Result<Resource> {
    let occurrence = req_date(at, "date", &e.date)?;
    let dose = match opt(&e.dose) {
        None => None,
        Some(v) => Some(v.parse::<u32>().ok().filter(|d| *d >= 1).ok_or_else(|| {
            at.invalid(
                "dose",
                format!("'{}' is not a positive whole number", shown(v)),
            )
        })?),
    };
    Ok(Resource::Immunization(Immunization {
        encounter: encounter_ref(at, e)?,
        meta: meta("Immunization", confidential),
        identifier: vec![microtest_id("immunisation", &id)],
        id,
        status: "completed".into(),
        vaccine_code: req_coded(at, "code", &e.code)?,
        patient: ctx.patient_ref.clone(),
        occurrence_date_time: occurrence,
        primary_source: Some(true),
        lot_number: owned(&e.batch),
        performer: author
            .map(|actor| ImmunizationPerformer { actor })
            .into_iter()
            .collect(),
        protocol_applied: dose
            .map(|d| ProtocolApplied {
                dose_number_positive_int: Some(d),
            })
            .into_iter()
            .collect(),
        ..Immunization::default()
    }))
}

fn map_consultation(
    ctx: &Ctx,
    at: &At,
    e: &NEntry<'_>,
    id: String,
    confidential: bool,
    author: Option<Reference>,
) -> Result<Resource> {
    let start = req_date(at, "date", &e.date)?;
    // Not mapped (as for EMIS), but a duration that is not a number is a fault.
    if let Some(d) = opt(&e.duration_minutes) {
        number(at, "duration_minutes", d)?;
    }
    Ok(Resource::Encounter(Encounter {
        meta: meta("Encounter", confidential),
        identifier: vec![microtest_id("consultation", &id)],
        status: "finished".into(),
        class: uk_core::ambulatory(),
        type_: coded(at, "code", &e.code)?.into_iter().collect(),
        subject: ctx.patient_ref.clone(),
        participant: author
            .map(|r| EncounterParticipant {
                individual: Some(r),
            })
            .into_iter()
            .collect(),
        period: Some(Period {
            start: Some(start),
            end: None,
        }),
        service_provider: Some(ctx.org_ref.clone()),
        id,
    }))
}

// ---- write-back: neutral → native ----------------------------------------------------

#[derive(Deserialize)]
struct NRecorded {
    entry_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct NContactUpdated<'a> {
    patient_id: Option<String>,
    #[serde(borrow)]
    last_modified: Option<NDate<'a>>,
}

fn unprocessable(detail: String) -> AdapterError {
    AdapterError::Unprocessable {
        system: crate::SYSTEM,
        detail,
    }
}

/// An instant as Evolution records it: UK local wall-clock time, `YYYY-MM-DDThh:mm:ss`.
pub fn native_datetime(t: UtcDateTime) -> String {
    let l = t.uk_local();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        l.year, l.month, l.day, l.hour, l.minute, l.second
    )
}

/// A number as Evolution sends it: a string, no exponent, no trailing `.0` (`"131"`, `"72.4"`).
fn native_number(v: f64) -> String {
    v.to_string()
}

/// The body of `POST …/patients/{id}/entries` recording `o` for patient `nhs`: one
/// reading per measurement, coded in SNOMED CT as Evolution records written readings
/// (a blood pressure panel is its systolic and diastolic readings; Evolution shows a
/// systolic followed by a diastolic at one time as one BP entry). A measurement
/// Evolution has no code for, or a value that is not a finite number, is `Unprocessable`.
pub fn render_entries_request(
    nhs: NhsNumber,
    o: &NewObservation,
) -> std::result::Result<Vec<u8>, AdapterError> {
    if o.measurements.is_empty() {
        return Err(unprocessable(format!(
            "observation {} ({}) has no measurements",
            o.snomed, o.display
        )));
    }
    let mut readings = Vec::with_capacity(o.measurements.len());
    for m in &o.measurements {
        let code = terminology::native_code(CodeScheme::Snomed, &m.snomed)
            .filter(|c| is_sctid(c))
            .ok_or_else(|| {
                unprocessable(format!(
                    "SNOMED CT {} ({}) has no Microtest Evolution code",
                    shown(&m.snomed),
                    m.display
                ))
            })?;
        if !m.value.is_finite() {
            return Err(unprocessable(format!(
                "{} value {} is not a number",
                m.display, m.value
            )));
        }
        readings.push(serde_json::json!({
            "code": { "snomed": code, "term": m.display },
            "value": native_number(m.value),
            "unit": m.unit,
        }));
    }
    let body = serde_json::json!({
        "nhs_number": nhs.to_string(),
        "type": "observation",
        "date": { "value": native_datetime(o.effective), "precision": "datetime" },
        "readings": readings,
    });
    serde_json::to_vec(&body).map_err(|e| unprocessable(e.to_string()))
}

/// The native `last_modified` value (UK local time, no offset) of a record version the
/// adapter answered (`last_modified` with its UK offset, see [`map_patient`]). Other
/// instants are converted to UK local time; `None` when `version` is not an instant.
pub fn native_last_modified(version: &str) -> Option<String> {
    // Our own versions: the local time is the text before the offset. Taking it as it
    // is (rather than via UTC) keeps the ambiguous autumn hour exact.
    if let Some(local) = version.get(..19) {
        let ours = local.split_once('T').and_then(|(day, time)| {
            let (y, m, d) = ymd(day)?;
            Some(local_date_time(y, m, d, hms(time)?))
        });
        if ours.as_deref() == Some(version) {
            return Some(local.to_owned());
        }
    }
    let (year, month, day, hour, minute, second) =
        gp_fhir::date::parse_instant_utc(version).ok()?;
    Some(native_datetime(UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }))
}

/// The body of `PUT …/patients/{id}/contact`: every contact field (`null` = none), the
/// address lines as Evolution holds them (1 to 3, as [`map_patient`] reads them back)
/// and the version the update was made against as `last_modified`.
pub fn render_contact_request(
    nhs: NhsNumber,
    last_modified: &str,
    d: &ContactDetails,
) -> std::result::Result<Vec<u8>, AdapterError> {
    let address = match &d.address {
        None => serde_json::Value::Null,
        Some(a) => {
            let lines: Vec<&str> = a
                .lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect();
            if !(1..=3).contains(&lines.len()) {
                return Err(unprocessable(format!(
                    "the address has {} lines; Microtest Evolution holds 1 to 3",
                    lines.len()
                )));
            }
            serde_json::json!({
                "lines": lines,
                "town": a.town,
                "county": a.county,
                "postcode": a.postcode,
            })
        }
    };
    let body = serde_json::json!({
        "nhs_number": nhs.to_string(),
        "last_modified": { "value": last_modified, "precision": "datetime" },
        "home_phone": d.home_phone,
        "mobile_phone": d.mobile,
        "email": d.email,
        "address": address,
        "preferred_language": d.language.as_ref().map(|code| serde_json::json!({ "code": code })),
    });
    serde_json::to_vec(&body).map_err(|e| unprocessable(e.to_string()))
}

/// Reads the answer to `POST …/entries`: the ids of the entries holding the readings,
/// one per reading, as a search returns them.
pub fn parse_recorded(body: &[u8], readings: usize) -> Result<Vec<String>> {
    let r: NRecorded = parse("entries answer", body)?;
    let ids = r.entry_ids.ok_or_else(|| At::ROOT.missing("entry_ids"))?;
    if ids.len() != readings {
        return Err(At::ROOT.invalid(
            "entry_ids",
            format!("{} ids for {readings} readings", ids.len()),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, v)| id(&At::nth("entry_ids", i), "id", &Some(v.clone())))
        .collect()
}

/// Reads the answer to `PUT …/contact` for `patient_id`: the new record version
/// (`last_modified` with its UK offset, as [`map_patient`] gives it).
pub fn parse_contact_updated(body: &[u8], patient_id: &str) -> Result<String> {
    let u: NContactUpdated = parse("contact answer", body)?;
    let at = At::ROOT;
    let answered = id(&at, "patient_id", &u.patient_id)?;
    if answered != patient_id {
        return Err(at.invalid(
            "patient_id",
            format!("the answer is for {answered}, but {patient_id} was updated"),
        ));
    }
    let version = req_date(&at, "last_modified", &u.last_modified)?;
    if version.len() < 20 {
        return Err(at.invalid(
            "last_modified.precision",
            "last_modified must have precision datetime",
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_field() {
        assert_eq!(
            At::nth("entries", 3).path("code.read"),
            "entries[3].code.read"
        );
        assert_eq!(At::ROOT.path("nhs_number"), "nhs_number");
        assert_eq!(At::field("site").path("ods_code"), "site.ods_code");
    }

    #[test]
    fn native_text_is_borrowed_or_unescaped_and_type_errors_read_as_before() {
        let nhs = NhsNumber::parse("9690937278").unwrap();
        let ods = OdsCode::parse("M85001").unwrap();
        let page = br#"{"entries":[{"id":"p1","type":"problem","status":"active",
            "code":{"read":"H33..","term":"Asthma \"brittle\" \u00e9"}}]}"#;
        let mapped = map_entries(page, EntryType::Problem, nhs, &ods).unwrap();
        let Resource::Condition(c) = &mapped.resources[0] else {
            panic!("{:?}", mapped.resources[0]);
        };
        assert_eq!(c.code.text.as_deref(), Some("Asthma \"brittle\" \u{e9}"));
        let bad = br#"{"entries":[{"id":5,"type":"problem"}]}"#;
        let e = map_entries(bad, EntryType::Problem, nhs, &ods).unwrap_err();
        assert_eq!(
            e.to_string(),
            MicrotestDataError::MalformedJson {
                document: "entries page",
                reason: "invalid type: integer `5`, expected a string at line 1 column 19".into(),
            }
            .to_string()
        );
    }

    #[test]
    fn read_codes_and_sctids_are_checked() {
        assert!(is_read2("H33.."));
        assert!(!is_read2("H33"));
        assert!(is_sctid("195967001"));
        assert!(!is_sctid("0123456"));
    }
}
