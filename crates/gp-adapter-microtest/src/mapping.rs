//! Microtest Evolution v2 JSON → UK Core R4. Pure functions, no I/O.
//!
//! Each document is mapped whole or not at all: a missing or malformed field fails it
//! with a [`MicrotestDataError`] naming the field (`entries[3].date.value`), so a caller
//! never sees a half-mapped resource. Documents are read with [`gp_adapter::json`], whose
//! getters name the path at fault. The format is `docs/native-formats/microtest.md`.
//! The FHIR produced is the same as gp-adapter-emis produces for the same facts.

use gp_adapter::json::{Document, DocumentError, Node, Precision, Value, date_with_precision};
use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::uk_core::{self, meta};
use gp_adapter::vital_signs;
use gp_adapter::{
    AdapterError, ClinicalType, Coded, ContactDetails, NewObservation, PatientFlags, UtcDateTime,
};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Coding, Condition,
    ContactPoint, Decimal, Dosage, Encounter, EncounterParticipant, HumanName, Identifier,
    Immunization, ImmunizationPerformer, MedicationStatement, NhsVerification, Observation,
    Organization, Patient, PatientCommunication, Period, Practitioner, ProtocolApplied, Quantity,
    Reference, Resource, SDS_USER_ID_SYSTEM,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

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

/// Parses an Evolution answer, named `document` in errors.
pub(crate) fn parse<'a>(document: &'static str, body: &'a [u8]) -> Result<Document<'a>> {
    Document::parse(body).map_err(|e| match e {
        DocumentError::NotUtf8 { offset } => MicrotestDataError::NotUtf8 { document, offset },
        DocumentError::Malformed { reason } => {
            MicrotestDataError::MalformedJson { document, reason }
        }
    })
}

/// Reads a problem+json error body, if it is one.
pub fn parse_problem(body: &[u8]) -> Option<NativeProblem> {
    let doc = Document::parse(body).ok()?;
    let text = |name: &str| {
        let value = doc.get(name).opt_str().ok().flatten();
        value.map(str::to_owned)
    };
    Some(NativeProblem {
        code: text("code")?,
        title: text("title").unwrap_or_default(),
        detail: text("detail").unwrap_or_default(),
    })
}

fn valid_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An Evolution id, used as the FHIR id as it is: 1-64 of `A-Z a-z 0-9 - .`.
pub(crate) fn id(n: Node) -> Result<String> {
    let raw = n.str()?;
    if valid_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(n
            .invalid(format!("'{}' is not a valid id", shown(raw)))
            .into())
    }
}

fn opt_id(n: Node) -> Result<Option<String>> {
    match n.opt_str()? {
        None => Ok(None),
        Some(_) => id(n).map(Some),
    }
}

/// Optional text, owned.
fn owned(n: Node) -> Result<Option<String>> {
    Ok(n.opt_str()?.map(str::to_owned))
}

/// A number sent as a string (`"120"`, `"72.5"`): `v`, the text of `n`.
fn number(n: Node, v: &str) -> Result<f64> {
    number_value(v).ok_or_else(|| n.invalid(format!("'{}' is not a number", shown(v))).into())
}

fn number_value(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

// ---- dates ---------------------------------------------------------------------------

/// An Evolution date object (`{"value": "2019-02", "precision": "month"}`) → FHIR
/// date/dateTime at its precision; `datetime` values are UK local time and get their
/// offset (`+00:00` GMT, `+01:00` BST).
fn date(d: Node) -> Result<Option<String>> {
    let Some(d) = d.opt_object()? else {
        return Ok(None);
    };
    let value = d.get("value");
    value.str()?;
    let precision = d.get("precision");
    let precision = match precision.str()? {
        "year" => Precision::Year,
        "month" => Precision::Month,
        "day" => Precision::Day,
        "datetime" => Precision::DateTime,
        other => {
            return Err(precision
                .invalid(format!(
                    "'{}' is not year, month, day or datetime",
                    shown(other)
                ))
                .into());
        }
    };
    Ok(Some(value.date_at(precision)?))
}

fn req_date(d: Node) -> Result<String> {
    date(d)?.ok_or_else(|| d.missing().into())
}

/// The record version a `last_modified` date object gives: a FHIR instant with its UK
/// offset, so `last_modified` must have precision `datetime`.
fn version(last_modified: Node) -> Result<String> {
    let version = req_date(last_modified)?;
    if version.len() < 20 {
        return Err(last_modified
            .get("precision")
            .invalid("last_modified must have precision datetime")
            .into());
    }
    Ok(version)
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

fn gender(sex: Node) -> Result<Option<String>> {
    let g = sex.opt_one_of(&[
        ("M", "male"),
        ("F", "female"),
        ("X", "other"),
        ("U", "unknown"),
    ])?;
    Ok(g.map(str::to_owned))
}

/// An official name from `title`, given names already split into words, and `family`.
fn human_name(title: Node, given: Vec<String>, family: Node) -> Result<Option<HumanName>> {
    let (title, family) = (owned(title)?, owned(family)?);
    Ok((family.is_some() || !given.is_empty()).then(|| HumanName {
        use_: Some("official".into()),
        family,
        given,
        prefix: title.into_iter().collect(),
    }))
}

/// Given names, each split at whitespace (`"Mary Jane"` is two).
fn given_names(words: Option<&str>) -> impl Iterator<Item = String> + '_ {
    words
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
}

fn address(a: Node) -> Result<Option<Address>> {
    let Some(a) = a.opt_object()? else {
        return Ok(None);
    };
    let lines = a.get("lines");
    let mut line = Vec::new();
    for l in lines.opt_array()?.into_iter().flatten() {
        line.extend(owned(l)?);
    }
    let addr = Address {
        use_: None,
        line,
        city: owned(a.get("town"))?,
        district: owned(a.get("county"))?,
        postal_code: owned(a.get("postcode"))?,
        country: None,
    };
    Ok((addr != Address::default()).then_some(addr))
}

fn contact(value: Node, system: &str, use_: Option<&str>) -> Result<Option<ContactPoint>> {
    Ok(value.opt_str()?.map(|v| ContactPoint {
        system: Some(system.to_owned()),
        value: Some(v.to_owned()),
        use_: use_.map(str::to_owned),
    }))
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
/// An Evolution code object (`{"read": "H33..", "term": "Asthma"}`, or `snomed`/`dmd`
/// instead of `read`) → CodeableConcept via the gateway's terminology maps.
fn coded(c: Node) -> Result<Option<CodeableConcept>> {
    let Some(c) = c.opt_object()? else {
        return Ok(None);
    };
    let term = c.get("term").opt_str()?.unwrap_or_default();
    let (read, snomed, dmd) = (c.get("read"), c.get("snomed"), c.get("dmd"));
    let (scheme, code, value) = match (read.opt_str()?, snomed.opt_str()?, dmd.opt_str()?) {
        (Some(r), None, None) => (CodeScheme::ReadV2, read, r),
        (None, Some(s), None) => (CodeScheme::Snomed, snomed, s),
        (None, None, Some(d)) => (CodeScheme::Dmd, dmd, d),
        (None, None, None) => {
            return Err(c.invalid("has no read, snomed or dmd code").into());
        }
        _ => {
            return Err(c
                .invalid("has more than one of read, snomed and dmd; expected exactly one")
                .into());
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
        return Err(code
            .invalid(format!("'{}' is not {what}", shown(value)))
            .into());
    }
    Ok(Some(terminology::coded(
        crate::SYSTEM,
        scheme,
        value,
        term,
        None,
    )))
}

fn req_coded(c: Node) -> Result<CodeableConcept> {
    coded(c)?.ok_or_else(|| c.missing().into())
}

/// `value`, the text of `n`, as a quantity in `unit`.
fn quantity(n: Node, value: &str, unit: Option<&str>) -> Result<Quantity> {
    Ok(quantity_of(number(n, value)?, unit))
}

fn quantity_of(v: f64, unit: Option<&str>) -> Quantity {
    match unit {
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
    let doc = parse("patient index", body)?;
    let list = doc.get("patients");
    let patients = list.array()?;
    let mut found = Vec::with_capacity(patients.len());
    for s in patients {
        let patient_id = id(s.get("patient_id"))?;
        let nhs_number = s.get("nhs_number");
        let listed =
            NhsNumber::parse(nhs_number.str()?).map_err(|e| nhs_number.invalid(e.to_string()))?;
        if listed != nhs {
            return Err(nhs_number
                .invalid(format!("the index lists {listed}, but {nhs} was asked for"))
                .into());
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
    let doc = parse("patient", body)?;
    let p = doc.root();
    let nhs_number = p.get("nhs_number");
    let compact: String = nhs_number.str()?.chars().filter(|c| *c != ' ').collect();
    let nhs = NhsNumber::parse(&compact).map_err(|e| nhs_number.invalid(e.to_string()))?;
    let status = p.get("nhs_number_status");
    let code = status.str()?;
    let verification = NhsVerification::from_code(code)
        .ok_or_else(|| status.invalid(format!("'{}' is not a code 01 to 08", shown(code))))?;
    let patient_id = id(p.get("patient_id"))?;
    p.get("family_name").str()?;
    let version = version(p.get("last_modified"))?;
    let restricted = p.get("restricted").opt_bool()?.unwrap_or(false);
    let dissent = p.get("sharing_dissent").opt_bool()?.unwrap_or(false);
    let usual = opt_id(p.get("usual_clinician_id"))?;
    let preferred = p.get("preferred_language");
    let language = match preferred.opt_object()? {
        None => None,
        Some(l) => {
            let code = l.get("code");
            let text = code.str()?;
            if !is_language_code(text) {
                return Err(code
                    .invalid(format!("'{}' is not a language code", shown(text)))
                    .into());
            }
            Some(PatientCommunication::preferred(text))
        }
    };

    let site = p.get("site").object()?;
    let ods_code = site.get("ods_code");
    let ods = OdsCode::parse(ods_code.str()?).map_err(|e| ods_code.invalid(e.to_string()))?;
    let organization = Organization {
        id: ods.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![
            Identifier::ods(&ods),
            microtest_id("site", &id(site.get("site_id"))?),
        ],
        name: owned(site.get("name"))?,
        telecom: contact(site.get("phone"), "phone", Some("work"))?
            .into_iter()
            .collect(),
        address: address(site.get("address"))?.into_iter().collect(),
    };

    let mut given = Vec::new();
    let given_list = p.get("given_names");
    for g in given_list.opt_array()?.into_iter().flatten() {
        given.extend(given_names(g.opt_str()?));
    }
    let mut telecom = Vec::new();
    telecom.extend(contact(p.get("home_phone"), "phone", Some("home"))?);
    telecom.extend(contact(p.get("mobile_phone"), "phone", Some("mobile"))?);
    telecom.extend(contact(p.get("email"), "email", None)?);
    let patient = Patient {
        id: nhs.to_string(),
        meta: meta("Patient", restricted),
        identifier: vec![
            Identifier::nhs_number(nhs, verification),
            microtest_id("patient", &patient_id),
        ],
        active: Some(true),
        name: human_name(p.get("title"), given, p.get("family_name"))?
            .into_iter()
            .collect(),
        telecom,
        gender: gender(p.get("sex"))?,
        birth_date: Some(req_date(p.get("date_of_birth"))?),
        deceased_date_time: date(p.get("date_of_death"))?,
        address: address(p.get("address"))?
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
    let doc = parse("clinician", body)?;
    let c = doc.root();
    let id = id(c.get("clinician_id"))?;
    let mut identifier = vec![microtest_id("clinician", &id)];
    identifier.extend(
        c.get("sds_user_id")
            .opt_str()?
            .map(|s| Identifier::new(SDS_USER_ID_SYSTEM, s)),
    );
    identifier.extend(c.get("gmc_number").opt_str()?.map(uk_core::gmc_identifier));
    let given = given_names(c.get("given_name").opt_str()?).collect();
    Ok(Practitioner {
        meta: meta("Practitioner", false),
        identifier,
        name: human_name(c.get("title"), given, c.get("family_name"))?
            .into_iter()
            .collect(),
        gender: gender(c.get("sex"))?,
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
    let doc = parse("entries page", body)?;
    let list = doc.get("entries");
    let entries = list.array()?;
    // The cursor is sent back as it stands, so it is read untrimmed.
    let cursor = doc.get("next_cursor");
    let next_cursor = match cursor.value()? {
        None => None,
        Some(Value::String(c)) => {
            check_cursor(kind, c)?;
            Some(c.to_string())
        }
        Some(_) => return Err(cursor.invalid("expected a string").into()),
    };
    let total = doc.get("total");
    let total = match total.opt_integer()? {
        None => None,
        Some(n) => Some(u64::try_from(n).map_err(|_| total.invalid(format!("{n} is negative")))?),
    };
    let ctx = Ctx {
        patient_ref: Reference::to("Patient", &nhs.to_string()),
        org_ref: Reference::to("Organization", ods.as_str()),
    };
    let count = entries.len();
    let mut resources = Vec::with_capacity(count + count / 4);
    for e in entries {
        let kind_of = e.get("type");
        let found = kind_of.str()?;
        if found != kind.as_str() {
            return Err(kind_of
                .invalid(format!(
                    "'{}' on a page of {} entries",
                    shown(found),
                    kind.as_str()
                ))
                .into());
        }
        map_entry(&ctx, kind, e, &mut resources)?;
    }
    Ok(MappedPage {
        resources,
        entries: count,
        total,
        next_cursor,
    })
}

struct Ctx {
    patient_ref: Reference,
    org_ref: Reference,
}

/// `Encounter/{consultation_id}`: ids are used as they are, so this is the id the
/// consultation entry's Encounter gets.
fn encounter_ref(e: Node) -> Result<Option<Reference>> {
    opt_ref(e.get("consultation_id"), "Encounter")
}

/// `{resource_type}/{id}` for an optional id field, checked as [`opt_id`] checks it,
/// built straight from the native text.
fn opt_ref(n: Node, resource_type: &str) -> Result<Option<Reference>> {
    match n.opt_str()? {
        None => Ok(None),
        Some(raw) if valid_id(raw) => Ok(Some(Reference::to(resource_type, raw))),
        Some(_) => id(n).map(|_| None),
    }
}

/// What every entry has, read before its type's own fields.
struct Head {
    id: String,
    confidential: bool,
    author: Option<Reference>,
}

fn map_entry(ctx: &Ctx, kind: EntryType, e: Node, out: &mut Vec<Resource>) -> Result<()> {
    let head = Head {
        id: id(e.get("id"))?,
        confidential: e.get("confidential").opt_bool()?.unwrap_or(false),
        author: opt_ref(e.get("clinician_id"), "Practitioner")?,
    };
    match kind {
        EntryType::Allergy => out.push(Resource::AllergyIntolerance(map_allergy(ctx, e, head)?)),
        EntryType::Medication => {
            out.push(Resource::MedicationStatement(map_medication(ctx, e, head)?))
        }
        EntryType::Problem => out.push(map_problem(ctx, e, head)?),
        EntryType::Observation => map_observation(ctx, e, head, out)?,
        EntryType::Immunisation => out.push(map_immunisation(ctx, e, head)?),
        EntryType::Consultation => out.push(map_consultation(ctx, e, head)?),
    }
    Ok(())
}

fn map_allergy(ctx: &Ctx, e: Node, head: Head) -> Result<AllergyIntolerance> {
    let category = e.get("category").opt_one_of(&[
        ("drug", "medication"),
        ("food", "food"),
        ("environment", "environment"),
    ])?;
    let status = e
        .get("status")
        .one_of(&[("active", "active"), ("resolved", "resolved")])?;
    let severity = e.get("severity").opt_one_of(&[
        ("mild", "mild"),
        ("moderate", "moderate"),
        ("severe", "severe"),
    ])?;
    // FHIR needs a manifestation for a reaction, so a severity alone is not emitted.
    let reaction = coded(e.get("reaction"))?.map(|m| AllergyReaction {
        manifestation: vec![m],
        severity: severity.map(str::to_owned),
    });
    let ended = date(e.get("end_date"))?;
    Ok(AllergyIntolerance {
        encounter: encounter_ref(e)?,
        meta: meta("AllergyIntolerance", head.confidential),
        identifier: vec![microtest_id("allergy", &head.id)],
        clinical_status: Some(uk_core::allergy_clinical_status(status)),
        verification_status: Some(uk_core::allergy_confirmed()),
        category: category.map(str::to_owned).into_iter().collect(),
        code: req_coded(e.get("code"))?,
        patient: ctx.patient_ref.clone(),
        onset_date_time: date(e.get("date"))?,
        recorder: head.author,
        reaction: reaction.into_iter().collect(),
        // R4 AllergyIntolerance has no end date element; keep it readable rather than lose it.
        note: ended
            .map(|d| Annotation {
                text: format!("Ended {d}"),
            })
            .into_iter()
            .collect(),
        id: head.id,
        ..AllergyIntolerance::default()
    })
}

fn map_medication(ctx: &Ctx, e: Node, head: Head) -> Result<MedicationStatement> {
    let status = e.get("status").one_of(&[
        ("active", "active"),
        ("completed", "completed"),
        ("cancelled", "stopped"),
    ])?;
    let start = date(e.get("date"))?;
    let end = date(e.get("end_date"))?;
    let kind = e
        .get("prescription_type")
        .opt_one_of(&[("acute", "Acute"), ("repeat", "Repeat")])?;
    let amount = e.get("quantity");
    let quantity = match amount.opt_str()? {
        None => None,
        Some(q) => {
            number(amount, q)?;
            Some(match e.get("quantity_unit").opt_str()? {
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
        context: encounter_ref(e)?,
        meta: meta("MedicationStatement", head.confidential),
        identifier: vec![microtest_id("medication", &head.id)],
        status: status.into(),
        medication_codeable_concept: req_coded(e.get("drug"))?,
        subject: ctx.patient_ref.clone(),
        effective_period: (start.is_some() || end.is_some()).then(|| Period {
            start: start.clone(),
            end,
        }),
        date_asserted: start,
        information_source: head.author,
        dosage: owned(e.get("dosage"))?
            .map(|d| Dosage {
                text: Some(d),
                patient_instruction: None,
            })
            .into_iter()
            .collect(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
        id: head.id,
    })
}

fn map_problem(ctx: &Ctx, e: Node, head: Head) -> Result<Resource> {
    let status = e
        .get("status")
        .one_of(&[("active", "active"), ("past", "inactive")])?;
    // Not mapped (as for EMIS), but still checked: a value outside the format is a fault.
    e.get("significance")
        .opt_one_of(&[("major", "major"), ("minor", "minor")])?;
    Ok(Resource::Condition(Condition {
        encounter: encounter_ref(e)?,
        meta: meta("Condition", head.confidential),
        identifier: vec![microtest_id("problem", &head.id)],
        clinical_status: Some(uk_core::condition_clinical_status(status)),
        verification_status: Some(uk_core::condition_confirmed()),
        category: vec![uk_core::problem_list_item()],
        code: req_coded(e.get("code"))?,
        subject: ctx.patient_ref.clone(),
        onset_date_time: date(e.get("date"))?,
        abatement_date_time: date(e.get("end_date"))?,
        recorder: head.author,
        id: head.id,
        ..Condition::default()
    }))
}

/// One Observation; a blood pressure entry (`systolic`/`diastolic`) is one panel with
/// the two readings as components, as every GP system's blood pressure reads.
fn map_observation(ctx: &Ctx, e: Node, head: Head, out: &mut Vec<Resource>) -> Result<()> {
    let effective = date(e.get("date"))?;
    let code = req_coded(e.get("code"))?;
    let encounter = encounter_ref(e)?;
    let (confidential, author) = (head.confidential, head.author);
    // The supplier's identifier of a reading it wrote comes first, then Evolution's.
    let ext = e.get("external_identifier");
    let supplier = match ext.opt_object()? {
        None => None,
        Some(x) => {
            vital_signs::supplier_identifier(x.get("system").opt_str()?, x.get("value").opt_str()?)
        }
    };
    let observation = |id: String, code: CodeableConcept, value: Option<Quantity>| {
        let mut o = Observation {
            meta: meta("Observation", confidential),
            identifier: supplier
                .clone()
                .into_iter()
                .chain([microtest_id("observation", &id)])
                .collect(),
            id,
            status: "final".into(),
            code,
            subject: ctx.patient_ref.clone(),
            encounter: encounter.clone(),
            effective_date_time: effective.clone(),
            performer: author.clone().into_iter().collect(),
            value_quantity: value,
            ..Observation::default()
        };
        vital_signs::categorise(&mut o);
        o
    };
    let details = Details::read(e)?;
    let (systolic, diastolic) = (e.get("systolic"), e.get("diastolic"));
    let value = e.get("value");
    if systolic.opt_object()?.is_none() && diastolic.opt_object()?.is_none() {
        let quantity = match value.opt_str()? {
            None => None,
            Some(v) => Some(quantity(value, v, e.get("unit").opt_str()?)?),
        };
        let mut one = observation(head.id, code, quantity);
        details.apply(&mut one);
        out.push(Resource::Observation(one));
        return Ok(());
    }
    if value.opt_str()?.is_some() {
        return Err(value
            .invalid("a blood pressure entry carries systolic and diastolic, not value")
            .into());
    }
    let mut ids: Vec<String> = Vec::with_capacity(2);
    let mut readings = Vec::with_capacity(2);
    for (field, reading, read, term) in [
        ("systolic", systolic, "2469.", "Systolic blood pressure"),
        ("diastolic", diastolic, "246A.", "Diastolic blood pressure"),
    ] {
        let Some(r) = reading.opt_object()? else {
            continue;
        };
        // The systolic reading is keyed by the entry's own id; the diastolic by its own.
        let rid = r.get("id");
        let rid_text = match (field, rid.opt_str()?) {
            ("systolic", None) => head.id.clone(),
            (_, Some(raw)) if valid_id(raw) => raw.to_owned(),
            _ => id(rid)?,
        };
        if ids.contains(&rid_text) {
            return Err(rid
                .invalid(format!("'{rid_text}' is the id of the other reading too"))
                .into());
        }
        let value = r.get("value");
        let text = value.str()?;
        let unit = r.get("unit").opt_str()?;
        let value = match number_value(text) {
            Some(v) => quantity_of(v, unit),
            None => quantity(value, text, unit)?,
        };
        let mut one = observation(
            rid_text.clone(),
            terminology::coded(crate::SYSTEM, CodeScheme::ReadV2, read, term, None),
            Some(value),
        );
        one.interpretation = native_coding(r.get("interpretation"))?
            .map(concept_of)
            .into_iter()
            .collect();
        readings.push(one);
        ids.push(rid_text);
    }
    let mut readings = readings.into_iter();
    match (readings.next(), readings.next()) {
        (Some(systolic), Some(diastolic)) => {
            // The panel is the entry: its id, the diastolic reading's id kept as an identifier.
            let mut panel = vital_signs::blood_pressure_panel(
                head.id.clone(),
                systolic,
                diastolic,
                Some((crate::SYSTEM, CodeScheme::ReadV2, "246..")),
            );
            if !ids.contains(&head.id) {
                panel.identifier.push(microtest_id("observation", &head.id));
            }
            details.apply(&mut panel);
            out.push(Resource::Observation(panel));
        }
        // Half a blood pressure: the one reading Evolution holds, as it is.
        (Some(mut one), None) => {
            details.apply(&mut one);
            out.push(Resource::Observation(one));
        }
        _ => {}
    }
    Ok(())
}

/// A coding object (`{"system": uri, "code": …, "term": …}`), as Evolution keeps the
/// interpretations, body sites, methods and supplier codes written with readings.
fn native_coding(n: Node) -> Result<Option<Coding>> {
    let Some(c) = n.opt_object()? else {
        return Ok(None);
    };
    let system = c.get("system");
    let uri = system.str()?;
    if !uri.contains(':') || uri.chars().any(char::is_whitespace) {
        return Err(system
            .invalid(format!("'{}' is not a URI", shown(uri)))
            .into());
    }
    let code = c.get("code");
    let value = code.str()?;
    if value.trim().is_empty() {
        return Err(code.invalid("is blank").into());
    }
    Ok(Some(Coding {
        system: Some(uri.to_owned()),
        code: Some(value.to_owned()),
        display: c.get("term").opt_str()?.map(str::to_owned),
        ..Coding::default()
    }))
}

fn concept_of(coding: Coding) -> CodeableConcept {
    CodeableConcept {
        coding: vec![coding],
        text: None,
    }
}

/// What an observation entry holds beyond code, value, date and clinician: its (the
/// panel's) interpretation, body site, method, device and the supplier's own codes.
struct Details {
    interpretation: Option<Coding>,
    body_site: Option<Coding>,
    method: Option<Coding>,
    device: Option<String>,
    original_codes: Vec<Coding>,
}

impl Details {
    fn read(e: Node) -> Result<Self> {
        let list = e.get("original_codes");
        let mut original_codes = Vec::new();
        for c in list.opt_array()?.into_iter().flatten() {
            original_codes.push(native_coding(c)?.ok_or_else(|| c.missing())?);
        }
        let device = e.get("device");
        let device = match device.opt_str()? {
            Some(d) if d.trim().is_empty() => return Err(device.invalid("is blank").into()),
            d => d.map(str::to_owned),
        };
        Ok(Self {
            interpretation: native_coding(e.get("interpretation"))?,
            body_site: native_coding(e.get("body_site"))?,
            method: native_coding(e.get("method"))?,
            device,
            original_codes,
        })
    }

    /// Sets them on `o`: the supplier's codes after Evolution's own coding, the device as
    /// a display-only reference (Evolution holds its name, not a Device).
    fn apply(&self, o: &mut Observation) {
        o.code.coding.extend(self.original_codes.iter().cloned());
        if let Some(i) = &self.interpretation {
            o.interpretation = vec![concept_of(i.clone())];
        }
        o.body_site = self.body_site.clone().map(concept_of);
        o.method = self.method.clone().map(concept_of);
        o.device = self.device.clone().map(|d| Reference {
            reference: None,
            identifier: None,
            display: Some(d),
        });
    }
}

fn map_immunisation(ctx: &Ctx, e: Node, head: Head) -> Result<Resource> {
    let occurrence = req_date(e.get("date"))?;
    let dose = e.get("dose");
    let dose_number = match dose.opt_str()? {
        None => None,
        Some(v) => Some(v.parse::<u32>().ok().filter(|d| *d >= 1).ok_or_else(|| {
            dose.invalid(format!("'{}' is not a positive whole number", shown(v)))
        })?),
    };
    Ok(Resource::Immunization(Immunization {
        encounter: encounter_ref(e)?,
        meta: meta("Immunization", head.confidential),
        identifier: vec![microtest_id("immunisation", &head.id)],
        id: head.id,
        status: "completed".into(),
        vaccine_code: req_coded(e.get("code"))?,
        patient: ctx.patient_ref.clone(),
        occurrence_date_time: occurrence,
        primary_source: Some(true),
        lot_number: owned(e.get("batch"))?,
        performer: head
            .author
            .map(|actor| ImmunizationPerformer { actor })
            .into_iter()
            .collect(),
        protocol_applied: dose_number
            .map(|d| ProtocolApplied {
                dose_number_positive_int: Some(d),
            })
            .into_iter()
            .collect(),
        ..Immunization::default()
    }))
}

fn map_consultation(ctx: &Ctx, e: Node, head: Head) -> Result<Resource> {
    let start = req_date(e.get("date"))?;
    // Not mapped (as for EMIS), but a duration that is not a number is a fault.
    let duration = e.get("duration_minutes");
    if let Some(d) = duration.opt_str()? {
        number(duration, d)?;
    }
    Ok(Resource::Encounter(Encounter {
        meta: meta("Encounter", head.confidential),
        identifier: vec![microtest_id("consultation", &head.id)],
        status: "finished".into(),
        class: uk_core::ambulatory(),
        type_: coded(e.get("code"))?.into_iter().collect(),
        subject: ctx.patient_ref.clone(),
        participant: head
            .author
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
        id: head.id,
    }))
}

// ---- write-back: neutral → native ----------------------------------------------------

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
    let d = &o.details;
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
        let mut reading = serde_json::json!({
            "code": { "snomed": code, "term": m.display },
            "value": native_number(m.value),
            "unit": m.unit,
        });
        // A single reading's interpretation is its own, wherever the gateway put it.
        let interpretation = match o.measurements.len() {
            1 => m.interpretation.as_ref().or(d.interpretation.as_ref()),
            _ => m.interpretation.as_ref(),
        };
        if let (Some(i), serde_json::Value::Object(r)) = (interpretation, &mut reading) {
            r.insert("interpretation".into(), render_coding(i));
        }
        readings.push(reading);
    }
    let date = if d.date_only {
        let t = o.effective;
        serde_json::json!({
            "value": format!("{:04}-{:02}-{:02}", t.year, t.month, t.day),
            "precision": "day",
        })
    } else {
        serde_json::json!({ "value": native_datetime(o.effective), "precision": "datetime" })
    };
    let mut body = serde_json::Map::new();
    body.insert("nhs_number".into(), nhs.to_string().into());
    body.insert("type".into(), "observation".into());
    body.insert("date".into(), date);
    body.insert("readings".into(), readings.into());
    if let Some((system, value)) = &o.identifier {
        body.insert(
            "external_identifier".into(),
            serde_json::json!({ "system": system, "value": value }),
        );
    }
    if let Some(clinician) = &d.performer {
        body.insert("clinician_id".into(), clinician.as_str().into());
    }
    if o.measurements.len() > 1
        && let Some(i) = &d.interpretation
    {
        body.insert("interpretation".into(), render_coding(i));
    }
    for (field, coded) in [("body_site", &d.body_site), ("method", &d.method)] {
        if let Some(c) = coded {
            body.insert(field.into(), render_coding(c));
        }
    }
    if let Some(device) = &d.device {
        body.insert("device".into(), device.as_str().into());
    }
    if !d.original_codings.is_empty() {
        body.insert(
            "original_codes".into(),
            d.original_codings.iter().map(render_coding).collect(),
        );
    }
    serde_json::to_vec(&body).map_err(|e| unprocessable(e.to_string()))
}

/// A coding object as Evolution takes it: `{"system": uri, "code": …, "term": …}`.
fn render_coding(c: &Coded) -> serde_json::Value {
    let mut v = serde_json::json!({ "system": c.system, "code": c.code });
    if let (Some(t), serde_json::Value::Object(m)) = (&c.display, &mut v) {
        m.insert("term".into(), t.as_str().into());
    }
    v
}

/// The native `last_modified` value (UK local time, no offset) of a record version the
/// adapter answered (`last_modified` with its UK offset, see [`map_patient`]). Other
/// instants are converted to UK local time; `None` when `version` is not an instant.
pub fn native_last_modified(version: &str) -> Option<String> {
    // Our own versions: the local time is the text before the offset. Taking it as it
    // is (rather than via UTC) keeps the ambiguous autumn hour exact.
    if let Some(local) = version.get(..19)
        && let Some((ours, Precision::DateTime)) = date_with_precision(local)
        && ours == version
    {
        return Some(local.to_owned());
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
    let doc = parse("entries answer", body)?;
    let list = doc.get("entry_ids");
    let ids = list.array()?;
    if ids.len() != readings {
        return Err(list
            .invalid(format!("{} ids for {readings} readings", ids.len()))
            .into());
    }
    ids.map(id).collect()
}

/// Reads the answer to `PUT …/contact` for `patient_id`: the new record version
/// (`last_modified` with its UK offset, as [`map_patient`] gives it).
pub fn parse_contact_updated(body: &[u8], patient_id: &str) -> Result<String> {
    let doc = parse("contact answer", body)?;
    let answered = doc.get("patient_id");
    let answered_id = id(answered)?;
    if answered_id != patient_id {
        return Err(answered
            .invalid(format!(
                "the answer is for {answered_id}, but {patient_id} was updated"
            ))
            .into());
    }
    version(doc.get("last_modified"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_text_is_unescaped_and_wrong_types_name_the_field() {
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
            e,
            MicrotestDataError::Invalid {
                path: "entries[0].id".into(),
                reason: "expected a string, found a number".into(),
            }
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
