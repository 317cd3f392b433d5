//! Vision extracts → UK Core R4. Pure functions, no I/O.
//!
//! An extract is mapped whole or not at all: any field that is missing or malformed
//! fails it with a [`VisionDataError`] naming the extract, row and column, so a caller
//! never sees a half-mapped resource. The format is `docs/native-formats/vision.md`;
//! the FHIR produced is the same shape as gp-adapter-emis produces for the same facts.

use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::{fhir_date, fhir_year, fhir_year_month, local_date_time};
use gp_adapter::uk_core::{self, meta};
use gp_adapter::vital_signs;
use gp_adapter::write::BLOOD_PRESSURE_PANEL;
use gp_adapter::{
    AdapterError, Coded, ContactDetails, Measurement, NewObservation, PatientFlags, UtcDateTime,
    Want,
};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Condition,
    ContactPoint, Dosage, Encounter, EncounterParticipant, HumanName, Identifier, Immunization,
    ImmunizationPerformer, MedicationStatement, NhsVerification, Observation, Organization,
    Patient, PatientCommunication, Period, Practitioner, ProtocolApplied, Quantity, Reference,
    Resource, SDS_USER_ID_SYSTEM,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::error::VisionDataError;
use crate::extract::{self, Extract, Row};

/// Base of the identifier systems holding Vision ids (`{base}{type}-id`).
pub const VISION_ID_BASE: &str = "https://inps.co.uk/Id/";
/// GMC reference number of a doctor.
pub use gp_adapter::uk_core::GMC_SYSTEM;
/// Read v2 code of Vision's one-row blood pressure reading.
pub const BP_READ_CODE: &str = "246..";
/// SNOMED CT codes a BP row may carry instead of a Read v2 code.
const BP_SNOMED: [&str; 2] = ["75367002", "163020007"];
/// The components a BP row's VALUE1 and VALUE2 become: (Read v2 code, term).
const BP_PARTS: [(&str, &str); 2] = [
    ("2469.", "Systolic blood pressure"),
    ("246A.", "Diastolic blood pressure"),
];

type Result<T> = std::result::Result<T, VisionDataError>;

/// A mapped patient extract.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedPatient {
    pub nhs_number: NhsNumber,
    /// Vision's patient id (`PID`), which every journal row repeats.
    pub pid: String,
    pub patient: Patient,
    /// `GP_USUAL`: the staff id of the usual GP.
    pub usual_gp: Option<String>,
    /// `LAST_MODIFIED` as a FHIR instant: changes whenever demographics change.
    pub version: String,
    pub flags: PatientFlags,
}

/// Whose journal a page belongs to.
#[derive(Debug, Clone)]
pub struct JournalOwner {
    /// The patient extract's `PID`; every row must carry it.
    pub pid: String,
    pub nhs_number: NhsNumber,
    pub ods: OdsCode,
}

/// Reads a Vision `ERROR|CODE|message` body's `(code, message)`, if the body is one.
pub fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, '|');
    if parts.next()? != "ERROR" {
        return None;
    }
    let code = parts.next().filter(|c| !c.is_empty())?.to_owned();
    Some((code, parts.next().unwrap_or_default().to_owned()))
}

// ---- field access --------------------------------------------------------------------

/// Columns looked up once per extract; `Col` carries the name for messages.
#[derive(Clone, Copy)]
pub(crate) struct Col {
    pub(crate) name: &'static str,
    pub(crate) index: usize,
}

pub(crate) fn col(ex: &Extract, name: &'static str) -> Result<Col> {
    Ok(Col {
        name,
        index: ex.column(name)?,
    })
}

pub(crate) fn opt<'e>(row: &Row<'e, '_>, c: Col) -> Option<&'e str> {
    row.opt(c.index)
}

pub(crate) fn req<'e>(row: &Row<'e, '_>, c: Col) -> Result<&'e str> {
    row.opt(c.index).ok_or(VisionDataError::Missing {
        extract: row.extract(),
        row: row.number(),
        column: c.name,
    })
}

pub(crate) fn invalid(row: &Row, c: Col, reason: impl Into<String>) -> VisionDataError {
    VisionDataError::Invalid {
        extract: row.extract(),
        row: row.number(),
        column: c.name,
        reason: reason.into(),
    }
}

/// `Y`/`N` (empty = `N`).
pub(crate) fn yes_no(row: &Row, c: Col) -> Result<bool> {
    match opt(row, c) {
        None | Some("N" | "n") => Ok(false),
        Some("Y" | "y") => Ok(true),
        Some(v) => Err(invalid(row, c, format!("'{}' is not Y or N", shown(v)))),
    }
}

fn valid_id(raw: &str) -> bool {
    // The documented limit (docs/native-formats/vision.md), within FHIR's 64.
    (1..=60).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn id_value(raw: &str) -> Option<String> {
    valid_id(raw).then(|| raw.to_ascii_lowercase())
}

/// A Vision id as a FHIR id: `A-Za-z0-9-.`, at most 60 characters, lower-cased.
pub(crate) fn id(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    id_value(raw).ok_or_else(|| invalid(row, c, format!("'{}' is not a Vision id", shown(raw))))
}

pub(crate) fn opt_id(row: &Row, c: Col) -> Result<Option<String>> {
    opt(row, c)
        .map(|raw| {
            id_value(raw)
                .ok_or_else(|| invalid(row, c, format!("'{}' is not a Vision id", shown(raw))))
        })
        .transpose()
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// The parts joined in one exact allocation: ids and notes are built per row, and
/// `format!` costs several times as much.
fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

// ---- dates ---------------------------------------------------------------------------

pub(crate) fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

pub(crate) fn ymd(s: &str) -> Option<(i32, u8, u8)> {
    if s.len() != 8 {
        return None;
    }
    Some((
        i32::try_from(digits(s.get(0..4)?)?).ok()?,
        u8::try_from(digits(s.get(4..6)?)?).ok()?,
        u8::try_from(digits(s.get(6..8)?)?).ok()?,
    ))
}

pub(crate) fn check_calendar(y: i32, m: u8, d: u8) -> bool {
    (1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && d >= 1
        && d <= gp_fhir::date::days_in_month(y, m)
}

/// A full calendar date's (year, month, day).
type Ymd = (i32, u8, u8);

/// `YYYYMMDD` with `YYYY0000` (a year) and `YYYYMM00` (a month) → FHIR date, plus the
/// parts when it was a full date.
fn vision_date(s: &str) -> Option<(String, Option<Ymd>)> {
    let (y, m, d) = ymd(s)?;
    match (m, d) {
        (0, 0) if (1..=9999).contains(&y) => Some((fhir_year(y), None)),
        (1..=12, 0) if (1..=9999).contains(&y) => Some((fhir_year_month(y, m), None)),
        _ if check_calendar(y, m, d) => Some((fhir_date(y, m, d), Some((y, m, d)))),
        _ => None,
    }
}

fn date(row: &Row, c: Col) -> Result<Option<String>> {
    opt(row, c)
        .map(|raw| {
            vision_date(raw).map(|(d, _)| d).ok_or_else(|| {
                invalid(
                    row,
                    c,
                    format!(
                        "'{}' is not a YYYYMMDD date (00 for unknown parts)",
                        shown(raw)
                    ),
                )
            })
        })
        .transpose()
}

/// `DATE` plus its `TIME` (`HHMM`, or `HHMMSS` when the seconds were recorded; UK
/// local, only with a full date) → FHIR date/dateTime.
fn date_time(row: &Row, date_col: Col, time_col: Col) -> Result<Option<String>> {
    let Some(raw) = opt(row, date_col) else {
        return match opt(row, time_col) {
            None => Ok(None),
            Some(_) => Err(invalid(row, time_col, "a TIME without a DATE")),
        };
    };
    let (date, full) = vision_date(raw).ok_or_else(|| {
        invalid(
            row,
            date_col,
            format!(
                "'{}' is not a YYYYMMDD date (00 for unknown parts)",
                shown(raw)
            ),
        )
    })?;
    let Some(t) = opt(row, time_col) else {
        return Ok(Some(date));
    };
    let Some((y, m, d)) = full else {
        return Err(invalid(row, time_col, "a TIME on a partial DATE"));
    };
    let part = |r: std::ops::Range<usize>| t.get(r).and_then(digits);
    let hms = match t.len() {
        4 => part(0..2).zip(part(2..4)).map(|(h, mi)| (h, mi, 0)),
        6 => part(0..2)
            .zip(part(2..4))
            .zip(part(4..6))
            .map(|((h, mi), sec)| (h, mi, sec)),
        _ => None,
    }
    .filter(|&(h, mi, sec)| h < 24 && mi < 60 && sec < 60)
    .ok_or_else(|| {
        invalid(
            row,
            time_col,
            format!("'{}' is not HHMM or HHMMSS", shown(t)),
        )
    })?;
    Ok(Some(local_date_time(
        y,
        m,
        d,
        (hms.0 as u8, hms.1 as u8, hms.2 as u8),
    )))
}

/// `YYYYMMDDHHMMSS` (UK local) → FHIR instant.
fn timestamp(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    let bad = || invalid(row, c, format!("'{}' is not YYYYMMDDHHMMSS", shown(raw)));
    if raw.len() != 14 {
        return Err(bad());
    }
    let (y, m, d) = raw
        .get(0..8)
        .and_then(ymd)
        .filter(|&(y, m, d)| check_calendar(y, m, d))
        .ok_or_else(bad)?;
    let part = |r: std::ops::Range<usize>| raw.get(r).and_then(digits);
    let (h, mi, s) = (
        part(8..10).ok_or_else(bad)?,
        part(10..12).ok_or_else(bad)?,
        part(12..14).ok_or_else(bad)?,
    );
    if h >= 24 || mi >= 60 || s >= 60 {
        return Err(bad());
    }
    Ok(local_date_time(y, m, d, (h as u8, mi as u8, s as u8)))
}

// ---- shared pieces -------------------------------------------------------------------

/// Vision sex codes: `1` male, `2` female, `9` indeterminate, `0` not known.
pub(crate) fn gender(row: &Row, c: Col) -> Result<Option<String>> {
    Ok(match opt(row, c) {
        None => None,
        Some("1") => Some("male".into()),
        Some("2") => Some("female".into()),
        Some("9") => Some("other".into()),
        Some("0") => Some("unknown".into()),
        Some(v) => {
            return Err(invalid(
                row,
                c,
                format!("'{}' is not 1, 2, 9 or 0", shown(v)),
            ));
        }
    })
}

fn human_name(
    family: Option<&str>,
    given: &[Option<&str>],
    title: Option<&str>,
) -> Option<HumanName> {
    let given: Vec<String> = given
        .iter()
        .flatten()
        .flat_map(|g| g.split_whitespace())
        .map(str::to_owned)
        .collect();
    (family.is_some() || !given.is_empty()).then(|| HumanName {
        use_: Some("official".into()),
        family: owned(family),
        given,
        prefix: owned(title).into_iter().collect(),
    })
}

/// `ADDRESS1..3`, `TOWN`, `COUNTY`, `POSTCODE` → Address (None when all empty).
fn address(row: &Row, cols: &[Col; 6]) -> Option<Address> {
    let addr = Address {
        use_: None,
        line: cols[..3]
            .iter()
            .filter_map(|c| opt(row, *c))
            .map(str::to_owned)
            .collect(),
        city: owned(opt(row, cols[3])),
        district: owned(opt(row, cols[4])),
        postal_code: owned(opt(row, cols[5])),
        country: None,
    };
    (addr != Address::default()).then_some(addr)
}

fn address_cols(ex: &Extract) -> Result<[Col; 6]> {
    Ok([
        col(ex, "ADDRESS1")?,
        col(ex, "ADDRESS2")?,
        col(ex, "ADDRESS3")?,
        col(ex, "TOWN")?,
        col(ex, "COUNTY")?,
        col(ex, "POSTCODE")?,
    ])
}

fn phone(value: Option<&str>, system: &str, use_: Option<&str>) -> Option<ContactPoint> {
    value.map(|v| ContactPoint {
        system: Some(system.to_owned()),
        value: Some(v.to_owned()),
        use_: use_.map(str::to_owned),
    })
}

/// `{VISION_ID_BASE}{kind}-id`; the systems are constants so a journal row's identifier
/// costs no formatting.
fn vision_id(kind: &str, value: &str) -> Identifier {
    let system = match kind {
        "patient" => "https://inps.co.uk/Id/patient-id",
        "practice" => "https://inps.co.uk/Id/practice-id",
        "staff" => "https://inps.co.uk/Id/staff-id",
        "journal" => "https://inps.co.uk/Id/journal-id",
        other => return Identifier::new(&format!("{VISION_ID_BASE}{other}-id"), value),
    };
    Identifier::new(system, value)
}

fn practitioner_ref(id: Option<String>) -> Option<Reference> {
    id.map(|g| Reference::to("Practitioner", &g))
}

pub(crate) fn exactly_one<'e, 'a>(ex: &'e Extract<'a>) -> Result<Row<'e, 'a>> {
    if ex.rows() != 1 {
        return Err(VisionDataError::RowCount {
            extract: ex.name(),
            found: ex.rows(),
            expected: "exactly 1",
        });
    }
    Ok(ex.row(0))
}

// ---- patient, practice, staff --------------------------------------------------------

/// Maps a patient extract (one row) for a patient registered at `ods`.
pub fn map_patient(body: &[u8], ods: &OdsCode) -> Result<MappedPatient> {
    let ex = Extract::parse("patient extract", body)?;
    let c = |name| col(&ex, name);
    let row = exactly_one(&ex)?;
    let nhs_col = c("NHS_NUMBER")?;
    let raw_nhs = req(&row, nhs_col)?;
    let compact: String = raw_nhs.chars().filter(|ch| *ch != ' ').collect();
    let nhs = NhsNumber::parse(&compact).map_err(|e| invalid(&row, nhs_col, e.to_string()))?;
    let status_col = c("NHS_NUMBER_STATUS")?;
    let status = req(&row, status_col)?;
    let verification = NhsVerification::from_code(status).ok_or_else(|| {
        invalid(
            &row,
            status_col,
            format!("'{}' is not a code 01 to 08", shown(status)),
        )
    })?;
    let pid = id(&row, c("PID")?)?;
    let version = timestamp(&row, c("LAST_MODIFIED")?)?;
    let restricted = yes_no(&row, c("SENSITIVE")?)?;
    let dissent = yes_no(&row, c("DISSENT")?)?;
    let usual_gp = opt_id(&row, c("GP_USUAL")?)?;
    let family = Some(req(&row, c("SURNAME")?)?);
    let active_col = c("ACTIVE")?;
    let active = match opt(&row, active_col) {
        None => None,
        Some("Y") => Some(true),
        Some("N") => Some(false),
        Some(v) => {
            return Err(invalid(
                &row,
                active_col,
                format!("'{}' is not Y or N", shown(v)),
            ));
        }
    };
    let dob_col = c("DATE_OF_BIRTH")?;
    let birth_date = date(&row, dob_col)?.ok_or(VisionDataError::Missing {
        extract: ex.name(),
        row: row.number(),
        column: "DATE_OF_BIRTH",
    })?;
    let mut telecom: Vec<ContactPoint> = Vec::new();
    telecom.extend(phone(opt(&row, c("HOME_PHONE")?), "phone", Some("home")));
    telecom.extend(phone(
        opt(&row, c("MOBILE_PHONE")?),
        "phone",
        Some("mobile"),
    ));
    telecom.extend(phone(opt(&row, c("EMAIL")?), "email", None));
    // Older extracts have no MAIN_LANGUAGE column: no language recorded.
    let communication = match ex.optional_column("MAIN_LANGUAGE") {
        None => Vec::new(),
        Some(index) => {
            let lang = Col {
                name: "MAIN_LANGUAGE",
                index,
            };
            match opt(&row, lang) {
                None => Vec::new(),
                Some(code) => vec![PatientCommunication::preferred(&language_code(
                    &row, lang, code,
                )?)],
            }
        }
    };
    let patient = Patient {
        id: nhs.to_string(),
        meta: meta("Patient", restricted),
        identifier: vec![
            Identifier::nhs_number(nhs, verification),
            vision_id("patient", &pid),
        ],
        active,
        name: human_name(
            family,
            &[opt(&row, c("FORENAME")?), opt(&row, c("MIDDLE_NAMES")?)],
            opt(&row, c("TITLE")?),
        )
        .into_iter()
        .collect(),
        telecom,
        gender: gender(&row, c("SEX")?)?,
        birth_date: Some(birth_date),
        deceased_date_time: date(&row, c("DATE_OF_DEATH")?)?,
        address: address(&row, &address_cols(&ex)?)
            .map(|a| Address {
                use_: Some("home".into()),
                ..a
            })
            .into_iter()
            .collect(),
        general_practitioner: practitioner_ref(usual_gp.clone()).into_iter().collect(),
        managing_organization: Some(Reference::to("Organization", ods.as_str())),
        communication,
    };
    Ok(MappedPatient {
        nhs_number: nhs,
        pid,
        patient,
        usual_gp,
        version,
        flags: PatientFlags {
            restricted,
            dissent,
        },
    })
}

/// `MAIN_LANGUAGE` (Vision keeps the ISO 639-1 code upper-cased: `PL`) → the UK Core
/// HumanLanguage code (`pl`).
fn language_code(row: &Row, c: Col, raw: &str) -> Result<String> {
    let ok =
        (2..=8).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(invalid(
            row,
            c,
            format!("'{}' is not a language code", shown(raw)),
        ))
    }
}

/// Maps a practice extract (one row) to an Organization.
pub fn map_practice(body: &[u8]) -> Result<(OdsCode, Organization)> {
    let ex = Extract::parse("practice extract", body)?;
    let row = exactly_one(&ex)?;
    let ods_col = col(&ex, "ODS_CODE")?;
    let ods =
        OdsCode::parse(req(&row, ods_col)?).map_err(|e| invalid(&row, ods_col, e.to_string()))?;
    let organization = Organization {
        id: ods.as_str().to_owned(),
        meta: meta("Organization", false),
        identifier: vec![
            Identifier::ods(&ods),
            vision_id("practice", &id(&row, col(&ex, "PRACTICE_ID")?)?),
        ],
        name: owned(opt(&row, col(&ex, "NAME")?)),
        telecom: phone(opt(&row, col(&ex, "PHONE")?), "phone", Some("work"))
            .into_iter()
            .collect(),
        address: address(&row, &address_cols(&ex)?).into_iter().collect(),
    };
    Ok((ods, organization))
}

/// Reads a staff extract (every row is checked) and maps the member with id `wanted`;
/// `None` when no row has that id.
pub fn map_staff(body: &[u8], wanted: &str) -> Result<Option<Practitioner>> {
    let ex = Extract::parse("staff extract", body)?;
    let (id_col, title, forename, surname, sex, sds, gmc) = (
        col(&ex, "STAFF_ID")?,
        col(&ex, "TITLE")?,
        col(&ex, "FORENAME")?,
        col(&ex, "SURNAME")?,
        col(&ex, "SEX")?,
        col(&ex, "SDS_USER_ID")?,
        col(&ex, "GMC_NUMBER")?,
    );
    let mut found = None;
    for row in ex.iter() {
        let staff_id = id(&row, id_col)?;
        if staff_id != wanted {
            continue;
        }
        let mut identifier = vec![vision_id("staff", &staff_id)];
        identifier.extend(opt(&row, sds).map(|s| Identifier::new(SDS_USER_ID_SYSTEM, s)));
        identifier.extend(opt(&row, gmc).map(uk_core::gmc_identifier));
        found = Some(Practitioner {
            meta: meta("Practitioner", false),
            identifier,
            name: human_name(opt(&row, surname), &[opt(&row, forename)], opt(&row, title))
                .into_iter()
                .collect(),
            gender: gender(&row, sex)?,
            id: staff_id,
        });
    }
    Ok(found)
}

// ---- the journal ---------------------------------------------------------------------

/// The journal columns, looked up once per page.
struct JournalCols {
    pid: Col,
    id: Col,
    date: Col,
    time: Col,
    kind: Col,
    code: Col,
    snomed: Col,
    dmd: Col,
    rubric: Col,
    value1: Col,
    value2: Col,
    units: Col,
    end_date: Col,
    severity: Col,
    status: Col,
    category: Col,
    author: Col,
    consultation: Col,
    confidential: Col,
    dosage: Col,
    quantity: Col,
    quantity_units: Col,
    prescription_type: Col,
    batch: Col,
    dose_no: Col,
    reaction_code: Col,
    reaction_snomed: Col,
    reaction_rubric: Col,
    /// The supplier's identifier of a reading it wrote (optional columns).
    ext_system: Option<usize>,
    ext_id: Option<usize>,
    /// A reading's interpretations (the row's, `VALUE1`'s, `VALUE2`'s) and body site:
    /// (code, term) optional columns.
    interpretation: [(Option<usize>, Option<usize>); 3],
    body_site: (Option<usize>, Option<usize>),
}

impl JournalCols {
    fn of(ex: &Extract) -> Result<Self> {
        let c = |name| col(ex, name);
        Ok(Self {
            pid: c("PID")?,
            id: c("ID")?,
            date: c("DATE")?,
            time: c("TIME")?,
            kind: c("TYPE")?,
            code: c("CODE")?,
            snomed: c("SNOMED_CODE")?,
            dmd: c("DMD_CODE")?,
            rubric: c("RUBRIC")?,
            value1: c("VALUE1")?,
            value2: c("VALUE2")?,
            units: c("UNITS")?,
            end_date: c("END_DATE")?,
            severity: c("SEVERITY")?,
            status: c("STATUS")?,
            category: c("CATEGORY")?,
            author: c("AUTHOR")?,
            consultation: c("CONSULTATION_ID")?,
            confidential: c("CONFIDENTIAL")?,
            dosage: c("DOSAGE")?,
            quantity: c("QUANTITY")?,
            quantity_units: c("QUANTITY_UNITS")?,
            prescription_type: c("PRESCRIPTION_TYPE")?,
            batch: c("BATCH")?,
            dose_no: c("DOSE_NO")?,
            reaction_code: c("REACTION_CODE")?,
            reaction_snomed: c("REACTION_SNOMED")?,
            reaction_rubric: c("REACTION_RUBRIC")?,
            ext_system: ex.optional_column("EXT_SYSTEM"),
            ext_id: ex.optional_column("EXT_ID"),
            interpretation: [
                ("INTERPRETATION", "INTERPRETATION_TERM"),
                ("INTERPRETATION1", "INTERPRETATION1_TERM"),
                ("INTERPRETATION2", "INTERPRETATION2_TERM"),
            ]
            .map(|(code, term)| (ex.optional_column(code), ex.optional_column(term))),
            body_site: (
                ex.optional_column("BODY_SITE"),
                ex.optional_column("BODY_SITE_RUBRIC"),
            ),
        })
    }
}

/// Maps one journal page (an extract of at most 500 rows) and appends its resources to
/// `out`; returns the number of rows read. Every row must belong to `owner`.
pub fn map_journal_page(
    body: &[u8],
    owner: &JournalOwner,
    out: &mut Vec<Resource>,
) -> Result<usize> {
    map_journal_page_for(body, owner, Want::Everything, out)
}

/// Maps what `want` asks of one journal page (see [`Want`]): rows of other clinical
/// areas are checked to be the owner's but not mapped. Returns the number of rows read.
pub fn map_journal_page_for(
    body: &[u8],
    owner: &JournalOwner,
    want: Want,
    out: &mut Vec<Resource>,
) -> Result<usize> {
    let ex = Extract::parse("journal extract", body)?;
    let cols = JournalCols::of(&ex)?;
    let patient_ref = Reference::to("Patient", &owner.nhs_number.to_string());
    let org_ref = Reference::to("Organization", owner.ods.as_str());
    let ctx = Ctx {
        cols: &cols,
        patient_ref: &patient_ref,
        org_ref: &org_ref,
        want,
    };
    // Room for exactly the page's resources (a BP row, the one with a VALUE2, gives two),
    // mapped straight into `out`; a bad row truncates `out` back to as it was.
    let bp_rows = ex.iter().filter(|r| opt(r, cols.value2).is_some()).count();
    out.reserve(ex.rows() + bp_rows);
    let start = out.len();
    let mapped = ex.iter().try_for_each(|row| {
        let pid = req(&row, cols.pid)?;
        if !pid.eq_ignore_ascii_case(&owner.pid) {
            return Err(invalid(
                &row,
                cols.pid,
                format!("the row is for patient {}, not {}", shown(pid), owner.pid),
            ));
        }
        map_row(&ctx, &row, out)
    });
    if let Err(e) = mapped {
        out.truncate(start);
        return Err(e);
    }
    Ok(ex.rows())
}

/// Maps a whole journal given as pages; the pure core of a search.
pub fn map_journal<B: AsRef<[u8]>>(pages: &[B], owner: &JournalOwner) -> Result<Vec<Resource>> {
    map_journal_for(pages, owner, Want::Everything)
}

/// Maps what `want` asks of a whole journal given as pages (see [`Want`]).
pub fn map_journal_for<B: AsRef<[u8]>>(
    pages: &[B],
    owner: &JournalOwner,
    want: Want,
) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for page in pages {
        map_journal_page_for(page.as_ref(), owner, want, &mut out)?;
    }
    Ok(out)
}

struct Ctx<'c> {
    cols: &'c JournalCols,
    patient_ref: &'c Reference,
    org_ref: &'c Reference,
    want: Want,
}

/// A coded item from (Read v2 code, SNOMED CT code, dm+d code, rubric) columns: a Read v2
/// code is mapped through the gateway's maps (the row's SNOMED CT code used only when the
/// map has no entry); with no Read v2 code, SNOMED CT then dm+d are taken as they are.
fn coded(
    row: &Row,
    read: Col,
    snomed: Col,
    dmd: Option<Col>,
    rubric: Col,
    prefer_dmd: bool,
) -> Result<Option<CodeableConcept>> {
    let term = opt(row, rubric).unwrap_or_default();
    let sct = opt(row, snomed)
        .map(|s| {
            if s.len() >= 6 && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s)
            } else {
                Err(invalid(
                    row,
                    snomed,
                    format!("'{}' is not a SNOMED CT id", shown(s)),
                ))
            }
        })
        .transpose()?;
    let dmd_code = match dmd {
        Some(c) => opt(row, c)
            .map(|s| {
                if s.len() >= 6 && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(s)
                } else {
                    Err(invalid(row, c, format!("'{}' is not a dm+d id", shown(s))))
                }
            })
            .transpose()?,
        None => None,
    };
    if prefer_dmd && let Some(d) = dmd_code {
        return Ok(Some(terminology::coded(
            crate::SYSTEM,
            CodeScheme::Dmd,
            d,
            term,
            None,
        )));
    }
    if let Some(code) = opt(row, read) {
        let ok = code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if !ok {
            return Err(invalid(
                row,
                read,
                format!("'{}' is not a 5-character Read v2 code", shown(code)),
            ));
        }
        return Ok(Some(terminology::coded(
            crate::SYSTEM,
            CodeScheme::ReadV2,
            code,
            term,
            sct,
        )));
    }
    Ok(match (sct, dmd_code) {
        (Some(s), _) => Some(terminology::coded(
            crate::SYSTEM,
            CodeScheme::Snomed,
            s,
            term,
            None,
        )),
        (None, Some(d)) => Some(terminology::coded(
            crate::SYSTEM,
            CodeScheme::Dmd,
            d,
            term,
            None,
        )),
        (None, None) => None,
    })
}

fn required_code(ctx: &Ctx, row: &Row, prefer_dmd: bool) -> Result<CodeableConcept> {
    let c = ctx.cols;
    coded(row, c.code, c.snomed, Some(c.dmd), c.rubric, prefer_dmd)?.ok_or_else(|| {
        VisionDataError::Missing {
            extract: row.extract(),
            row: row.number(),
            column: if prefer_dmd { "DMD_CODE" } else { "CODE" },
        }
    })
}

fn number(row: &Row, c: Col) -> Result<Option<f64>> {
    opt(row, c)
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| invalid(row, c, format!("'{}' is not a number", shown(v))))
        })
        .transpose()
}

/// The names of the qualifier columns, for messages.
const INTERPRETATION_COLUMNS: [&str; 3] = ["INTERPRETATION", "INTERPRETATION1", "INTERPRETATION2"];

/// A qualifier (code, term) column pair as a CodeableConcept of `system`; `None` when the
/// code is empty. A term without a code, a code with spaces or control characters or
/// over 20 characters, or a body site that is not a SNOMED CT id, fails the row.
fn qualifier(
    row: &Row,
    (code, term): (Option<usize>, Option<usize>),
    name: &'static str,
    system: &str,
) -> Result<Option<CodeableConcept>> {
    let value = code.and_then(|c| row.opt(c));
    let display = term.and_then(|c| row.opt(c));
    let fail = |reason: String| VisionDataError::Invalid {
        extract: row.extract(),
        row: row.number(),
        column: name,
        reason,
    };
    let Some(value) = value else {
        return match display {
            None => Ok(None),
            Some(_) => Err(fail("a term without a code".into())),
        };
    };
    let ok = if system == SNOMED_SYSTEM {
        (6..=18).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
    } else {
        value.chars().count() <= 20 && !value.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    if !ok {
        return Err(fail(format!(
            "'{}' is not a code Vision holds here",
            shown(value)
        )));
    }
    Ok(Some(
        Coded {
            system: system.to_owned(),
            code: value.to_owned(),
            display: owned(display),
        }
        .concept(),
    ))
}

fn quantity(value: f64, units: Option<&str>) -> Quantity {
    match units {
        Some(u) => Quantity::ucum(value, u),
        None => Quantity {
            value: gp_fhir::model::Decimal(value),
            unit: None,
            system: None,
            code: None,
        },
    }
}

/// `Encounter/{CONSULTATION_ID}`, lower-cased by `opt_id` exactly as the CONSULTATION
/// row's own `ID` is, so it names the Encounter that row becomes.
fn encounter_ref(ctx: &Ctx, row: &Row) -> Result<Option<Reference>> {
    opt_ref(row, ctx.cols.consultation, "Encounter")
}

/// `{resource_type}/{id}` for an optional id column, the id checked and lower-cased as
/// [`opt_id`] does, without an intermediate String when it is lower case already.
fn opt_ref(row: &Row, c: Col, resource_type: &str) -> Result<Option<Reference>> {
    let Some(raw) = opt(row, c) else {
        return Ok(None);
    };
    if !valid_id(raw) {
        return Err(invalid(
            row,
            c,
            format!("'{}' is not a Vision id", shown(raw)),
        ));
    }
    Ok(Some(if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Reference::to(resource_type, &raw.to_ascii_lowercase())
    } else {
        Reference::to(resource_type, raw)
    }))
}

/// The FHIR resource type a journal row of `TYPE` `kind` maps to; `None` for a type
/// Vision does not have (the row is then mapped, and refused as it is in the whole
/// journal).
fn resource_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "CONSULTATION" => "Encounter",
        "OBSERVATION" => "Observation",
        "PROBLEM" => "Condition",
        "IMMUNISATION" => "Immunization",
        "ALLERGY" => "AllergyIntolerance",
        "THERAPY" => "MedicationStatement",
        _ => return None,
    })
}

fn map_row(ctx: &Ctx, row: &Row, out: &mut Vec<Resource>) -> Result<()> {
    let c = ctx.cols;
    // A row of an area not wanted is skipped unmapped.
    if let Some(t) = opt(row, c.kind).and_then(resource_type)
        && !ctx.want.takes(t)
    {
        return Ok(());
    }
    let id = id(row, c.id)?;
    let confidential = yes_no(row, c.confidential)?;
    let date = date_time(row, c.date, c.time)?;
    let author = opt_ref(row, c.author, "Practitioner")?;
    let encounter = encounter_ref(ctx, row)?;
    match req(row, c.kind)? {
        "CONSULTATION" => {
            let start = date.ok_or(VisionDataError::Missing {
                extract: row.extract(),
                row: row.number(),
                column: "DATE",
            })?;
            out.push(Resource::Encounter(Encounter {
                meta: meta("Encounter", confidential),
                identifier: vec![vision_id("journal", &id)],
                status: "finished".into(),
                class: uk_core::ambulatory(),
                type_: coded(row, c.code, c.snomed, None, c.rubric, false)?
                    .into_iter()
                    .collect(),
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
            }));
        }
        "OBSERVATION" => {
            let units = opt(row, c.units);
            let value1 = number(row, c.value1)?;
            // The supplier's identifier of a reading it wrote comes first, then Vision's.
            let identifier: Vec<Identifier> = vital_signs::supplier_identifier(
                c.ext_system.and_then(|i| row.opt(i)),
                c.ext_id.and_then(|i| row.opt(i)),
            )
            .into_iter()
            .chain([vision_id("journal", &id)])
            .collect();
            if let Some(value2) = number(row, c.value2)? {
                // Vision's one-row blood pressure: the same two Observations EMIS yields.
                let is_bp = match opt(row, c.code) {
                    Some(code) => code == BP_READ_CODE,
                    None => opt(row, c.snomed).is_some_and(|s| BP_SNOMED.contains(&s)),
                };
                if !is_bp {
                    return Err(invalid(
                        row,
                        c.value2,
                        "VALUE2 is only used by blood pressure (246..) rows",
                    ));
                }
                let systolic = value1.ok_or(VisionDataError::Missing {
                    extract: row.extract(),
                    row: row.number(),
                    column: "VALUE1",
                })?;
                let [panel_interp, sys_interp, dia_interp] = [0, 1, 2].map(|i| {
                    qualifier(
                        row,
                        c.interpretation[i],
                        INTERPRETATION_COLUMNS[i],
                        INTERPRETATION_SYSTEM,
                    )
                });
                let (panel_interp, sys_interp, dia_interp) =
                    (panel_interp?, sys_interp?, dia_interp?);
                let body_site = qualifier(row, c.body_site, "BODY_SITE", SNOMED_SYSTEM)?;
                // One panel, as every GP system's blood pressure reads: the row's id.
                let [systolic, diastolic] = [
                    (BP_PARTS[0], systolic, sys_interp),
                    (BP_PARTS[1], value2, dia_interp),
                ]
                .map(|((code, term), value, interpretation)| Observation {
                    id: id.clone(),
                    meta: meta("Observation", confidential),
                    identifier: identifier.clone(),
                    status: "final".into(),
                    code: terminology::coded(crate::SYSTEM, CodeScheme::ReadV2, code, term, None),
                    subject: ctx.patient_ref.clone(),
                    encounter: encounter.clone(),
                    effective_date_time: date.clone(),
                    performer: author.clone().into_iter().collect(),
                    value_quantity: Some(quantity(value, Some(units.unwrap_or("mm[Hg]")))),
                    interpretation: interpretation.into_iter().collect(),
                    body_site: body_site.clone(),
                    ..Observation::default()
                });
                // A row coded in SNOMED CT only (no CODE) reads as the SNOMED CT panel.
                let native =
                    opt(row, c.code).map(|_| (crate::SYSTEM, CodeScheme::ReadV2, BP_READ_CODE));
                let mut panel = vital_signs::blood_pressure_panel(id, systolic, diastolic, native);
                panel.interpretation = panel_interp.into_iter().collect();
                out.push(Resource::Observation(panel));
                return Ok(());
            }
            // Only a blood pressure row has a panel's and a second reading's interpretation.
            for i in [0, 2] {
                let (code, term) = c.interpretation[i];
                if [code, term]
                    .into_iter()
                    .flatten()
                    .any(|col| row.opt(col).is_some())
                {
                    return Err(VisionDataError::Invalid {
                        extract: row.extract(),
                        row: row.number(),
                        column: INTERPRETATION_COLUMNS[i],
                        reason: "only a blood pressure row has this interpretation".into(),
                    });
                }
            }
            let interpretation = qualifier(
                row,
                c.interpretation[1],
                INTERPRETATION_COLUMNS[1],
                INTERPRETATION_SYSTEM,
            )?;
            let mut observation = Observation {
                meta: meta("Observation", confidential),
                identifier,
                id,
                status: "final".into(),
                code: required_code(ctx, row, false)?,
                subject: ctx.patient_ref.clone(),
                encounter,
                effective_date_time: date,
                performer: author.into_iter().collect(),
                value_quantity: value1.map(|v| quantity(v, units)),
                interpretation: interpretation.into_iter().collect(),
                body_site: qualifier(row, c.body_site, "BODY_SITE", SNOMED_SYSTEM)?,
                ..Observation::default()
            };
            vital_signs::categorise(&mut observation);
            out.push(Resource::Observation(observation));
        }
        "PROBLEM" => {
            let status = match req(row, c.status)? {
                "ACTIVE" => "active",
                "PAST" => "inactive",
                other => {
                    return Err(invalid(
                        row,
                        c.status,
                        format!("'{}' is not ACTIVE or PAST", shown(other)),
                    ));
                }
            };
            out.push(Resource::Condition(Condition {
                meta: meta("Condition", confidential),
                identifier: vec![vision_id("journal", &id)],
                id,
                clinical_status: Some(uk_core::condition_clinical_status(status)),
                verification_status: Some(uk_core::condition_confirmed()),
                category: vec![uk_core::problem_list_item()],
                code: required_code(ctx, row, false)?,
                subject: ctx.patient_ref.clone(),
                encounter,
                onset_date_time: date,
                abatement_date_time: self::date(row, c.end_date)?,
                recorder: author,
                ..Condition::default()
            }));
        }
        "IMMUNISATION" => {
            let occurrence = date.ok_or(VisionDataError::Missing {
                extract: row.extract(),
                row: row.number(),
                column: "DATE",
            })?;
            let dose = opt(row, c.dose_no)
                .map(|v| {
                    v.parse::<u32>().ok().filter(|d| *d >= 1).ok_or_else(|| {
                        invalid(
                            row,
                            c.dose_no,
                            format!("'{}' is not a positive whole number", shown(v)),
                        )
                    })
                })
                .transpose()?;
            out.push(Resource::Immunization(Immunization {
                meta: meta("Immunization", confidential),
                identifier: vec![vision_id("journal", &id)],
                id,
                status: "completed".into(),
                vaccine_code: required_code(ctx, row, false)?,
                patient: ctx.patient_ref.clone(),
                encounter,
                occurrence_date_time: occurrence,
                primary_source: Some(true),
                lot_number: owned(opt(row, c.batch)),
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
            }));
        }
        "ALLERGY" => out.push(Resource::AllergyIntolerance(map_allergy(
            ctx,
            row,
            id,
            confidential,
            date,
            author,
            encounter,
        )?)),
        "THERAPY" => out.push(Resource::MedicationStatement(map_therapy(
            ctx,
            row,
            id,
            confidential,
            date,
            author,
            encounter,
        )?)),
        other => {
            return Err(invalid(
                row,
                c.kind,
                format!(
                    "'{}' is not CONSULTATION, OBSERVATION, PROBLEM, IMMUNISATION, ALLERGY or THERAPY",
                    shown(other)
                ),
            ));
        }
    }
    Ok(())
}

fn map_allergy(
    ctx: &Ctx,
    row: &Row,
    id: String,
    confidential: bool,
    date: Option<String>,
    author: Option<Reference>,
    encounter: Option<Reference>,
) -> Result<AllergyIntolerance> {
    let c = ctx.cols;
    let category = match opt(row, c.category) {
        None => None,
        Some("DRUG") => Some("medication"),
        Some("FOOD") => Some("food"),
        Some("ENVIRONMENT") => Some("environment"),
        Some(v) => {
            return Err(invalid(
                row,
                c.category,
                format!("'{}' is not DRUG, FOOD or ENVIRONMENT", shown(v)),
            ));
        }
    };
    let status = match req(row, c.status)? {
        "ACTIVE" => "active",
        "RESOLVED" => "resolved",
        v => {
            return Err(invalid(
                row,
                c.status,
                format!("'{}' is not ACTIVE or RESOLVED", shown(v)),
            ));
        }
    };
    let severity = match opt(row, c.severity) {
        None => None,
        Some("MILD") => Some("mild"),
        Some("MODERATE") => Some("moderate"),
        Some("SEVERE") => Some("severe"),
        Some(v) => {
            return Err(invalid(
                row,
                c.severity,
                format!("'{}' is not MILD, MODERATE or SEVERE", shown(v)),
            ));
        }
    };
    // FHIR needs a manifestation for a reaction, so a severity alone is not emitted.
    let reaction = coded(
        row,
        c.reaction_code,
        c.reaction_snomed,
        None,
        c.reaction_rubric,
        false,
    )?
    .map(|m| AllergyReaction {
        manifestation: vec![m],
        severity: severity.map(str::to_owned),
    });
    let ended = self::date(row, c.end_date)?;
    Ok(AllergyIntolerance {
        meta: meta("AllergyIntolerance", confidential),
        identifier: vec![vision_id("journal", &id)],
        clinical_status: Some(uk_core::allergy_clinical_status(status)),
        verification_status: Some(uk_core::allergy_confirmed()),
        category: category.map(str::to_owned).into_iter().collect(),
        code: required_code(ctx, row, false)?,
        patient: ctx.patient_ref.clone(),
        encounter,
        onset_date_time: date,
        recorder: author,
        reaction: reaction.into_iter().collect(),
        // R4 AllergyIntolerance has no end date element; keep it readable rather than lose it.
        note: ended
            .map(|d| Annotation {
                text: joined(&["Ended ", &d]),
            })
            .into_iter()
            .collect(),
        id,
        ..AllergyIntolerance::default()
    })
}

fn map_therapy(
    ctx: &Ctx,
    row: &Row,
    id: String,
    confidential: bool,
    start: Option<String>,
    author: Option<Reference>,
    context: Option<Reference>,
) -> Result<MedicationStatement> {
    let c = ctx.cols;
    let status = match req(row, c.status)? {
        "ACTIVE" => "active",
        "COMPLETED" => "completed",
        "CANCELLED" => "stopped",
        v => {
            return Err(invalid(
                row,
                c.status,
                format!("'{}' is not ACTIVE, COMPLETED or CANCELLED", shown(v)),
            ));
        }
    };
    let end = self::date(row, c.end_date)?;
    let kind = match opt(row, c.prescription_type) {
        None => None,
        Some("ACUTE") => Some("Acute"),
        Some("REPEAT") => Some("Repeat"),
        Some(v) => {
            return Err(invalid(
                row,
                c.prescription_type,
                format!("'{}' is not ACUTE or REPEAT", shown(v)),
            ));
        }
    };
    let quantity = opt(row, c.quantity);
    let units = quantity.and(opt(row, c.quantity_units));
    let note = match (kind, quantity, units) {
        (None, None, _) => None,
        (Some(k), None, _) => Some(joined(&[k, " prescription"])),
        (None, Some(q), None) => Some(joined(&["Quantity ", q])),
        (None, Some(q), Some(u)) => Some(joined(&["Quantity ", q, " ", u])),
        (Some(k), Some(q), None) => Some(joined(&[k, " prescription, quantity ", q])),
        (Some(k), Some(q), Some(u)) => Some(joined(&[k, " prescription, quantity ", q, " ", u])),
    };
    Ok(MedicationStatement {
        meta: meta("MedicationStatement", confidential),
        identifier: vec![vision_id("journal", &id)],
        status: status.into(),
        medication_codeable_concept: required_code(ctx, row, true)?,
        subject: ctx.patient_ref.clone(),
        context,
        effective_period: (start.is_some() || end.is_some()).then(|| Period {
            start: start.clone(),
            end,
        }),
        date_asserted: start,
        information_source: author,
        dosage: opt(row, c.dosage)
            .map(|d| Dosage {
                text: Some(d.to_owned()),
                patient_instruction: None,
            })
            .into_iter()
            .collect(),
        note: note.map(|text| Annotation { text }).into_iter().collect(),
        id,
    })
}

// ---- writes (neutral → native) -------------------------------------------------------

/// Columns of a journal write (`POST …/journal`), in the order the adapter sends them.
pub const WRITE_COLUMNS: [&str; 8] = [
    "TYPE", "DATE", "TIME", "CODE", "RUBRIC", "VALUE1", "VALUE2", "UNITS",
];
/// The columns a journal write adds when the supplier gave the reading an identifier.
pub const WRITE_IDENTIFIER_COLUMNS: [&str; 2] = ["EXT_SYSTEM", "EXT_ID"];
/// The columns a journal write adds when a reading carries them: its SNOMED CT code
/// (a concept without a Read v2 code), the clinician who took it, the row's (a blood
/// pressure panel's), `VALUE1`'s and `VALUE2`'s interpretations, and the body site.
pub const WRITE_DETAIL_COLUMNS: [&str; 10] = [
    "SNOMED_CODE",
    "AUTHOR",
    "INTERPRETATION",
    "INTERPRETATION_TERM",
    "INTERPRETATION1",
    "INTERPRETATION1_TERM",
    "INTERPRETATION2",
    "INTERPRETATION2_TERM",
    "BODY_SITE",
    "BODY_SITE_RUBRIC",
];
/// Columns of a contact update (`PUT …/contact`).
pub const CONTACT_COLUMNS: [&str; 11] = [
    "HOME_PHONE",
    "MOBILE_PHONE",
    "EMAIL",
    "ADDRESS1",
    "ADDRESS2",
    "ADDRESS3",
    "TOWN",
    "COUNTY",
    "POSTCODE",
    "MAIN_LANGUAGE",
    "LAST_MODIFIED",
];
/// SNOMED CT systolic and diastolic blood pressure: the two readings of a BP row.
const SYSTOLIC: &str = "271649006";
const DIASTOLIC: &str = "271650006";

fn unprocessable(detail: String) -> AdapterError {
    AdapterError::Unprocessable {
        system: crate::SYSTEM,
        detail,
    }
}

/// A measured value as Vision writes it (the shortest decimal that reads back exactly).
fn native_value(m: &Measurement) -> std::result::Result<String, AdapterError> {
    if m.value.is_finite() {
        Ok(m.value.to_string())
    } else {
        Err(unprocessable(format!(
            "{} {} is not a number Vision can record",
            m.display, m.value
        )))
    }
}

/// `YYYYMMDD` and `HHMMSS`, UK local time (Vision records wall-clock time, no offset).
pub fn native_date_time(at: UtcDateTime) -> (String, String) {
    let l = at.uk_local();
    (
        format!("{:04}{:02}{:02}", l.year, l.month, l.day),
        format!("{:02}{:02}{:02}", l.hour, l.minute, l.second),
    )
}

/// v3 ObservationInterpretation: the code system of Vision's interpretation columns.
pub const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// A code for one of the write's code + term column pairs: Vision holds `system`'s codes
/// only there.
fn native_code(
    coded: Option<&Coded>,
    system: &str,
    what: &str,
) -> std::result::Result<[String; 2], AdapterError> {
    match coded {
        None => Ok([String::new(), String::new()]),
        Some(c) if c.system == system => {
            Ok([c.code.clone(), c.display.clone().unwrap_or_default()])
        }
        Some(c) => Err(unprocessable(format!(
            "Vision holds a reading's {what} as a {system} code, not {} {}",
            c.system, c.code
        ))),
    }
}

/// Renders a supplier's observation as a journal write extract: a blood pressure panel
/// with both readings is Vision's one BP row (`246..`, systolic in `VALUE1`, diastolic
/// in `VALUE2`, the panel's interpretation in `INTERPRETATION`, each reading's in
/// `INTERPRETATION1`/`INTERPRETATION2`); every other measurement is a row of its own,
/// coded in Read v2, or by `SNOMED_CODE` alone when Read v2 has no code for it. A
/// date-only reading leaves `TIME` empty; the clinician who took it is `AUTHOR`, the
/// body site `BODY_SITE`. Details Vision cannot hold (method, device, other codings, an
/// interpretation or body site in another code system) are `Unprocessable`; columns no
/// row uses are left out.
pub fn render_observation(obs: &NewObservation) -> std::result::Result<String, AdapterError> {
    if obs.measurements.is_empty() {
        return Err(unprocessable("the observation has no measurement".into()));
    }
    let d = &obs.details;
    let refused = [
        (d.method.is_some(), "a method"),
        (d.device.is_some(), "a device"),
        (!d.original_codings.is_empty(), "other codings"),
    ];
    if let Some((_, what)) = refused.iter().find(|(given, _)| *given) {
        return Err(unprocessable(format!(
            "Vision does not hold {what} with a reading"
        )));
    }
    let (date, time) = if d.date_only {
        let e = obs.effective;
        (
            format!("{:04}{:02}{:02}", e.year, e.month, e.day),
            String::new(),
        )
    } else {
        native_date_time(obs.effective)
    };
    let body_site = native_code(d.body_site.as_ref(), SNOMED_SYSTEM, "body site")?;
    let author = d.performer.clone().unwrap_or_default();
    let identifier = obs.identifier.clone().unwrap_or_default();
    // Every column a row may carry, in this order; unused optional ones are dropped.
    let columns: Vec<&str> = WRITE_COLUMNS
        .iter()
        .chain(&WRITE_IDENTIFIER_COLUMNS)
        .chain(&WRITE_DETAIL_COLUMNS)
        .copied()
        .collect();
    let row = |code: &str,
               snomed: &str,
               rubric: &str,
               v1: String,
               v2: String,
               units: &str,
               interpretations: [[String; 2]; 3]|
     -> Vec<String> {
        let [panel, first, second] = interpretations;
        let mut r = vec![
            "OBSERVATION".to_owned(),
            date.clone(),
            time.clone(),
            code.to_owned(),
            rubric.to_owned(),
            v1,
            v2,
            units.to_owned(),
            identifier.0.clone(),
            identifier.1.clone(),
            snomed.to_owned(),
            author.clone(),
        ];
        r.extend(panel);
        r.extend(first);
        r.extend(second);
        r.extend(body_site.clone());
        r
    };
    let interpretation =
        |m: Option<&Coded>, what: &str| native_code(m, INTERPRETATION_SYSTEM, what);
    let none = || [String::new(), String::new()];
    let mut rest: Vec<&Measurement> = obs.measurements.iter().collect();
    let mut rows = Vec::new();
    let find = |rest: &[&Measurement], code: &str| rest.iter().position(|m| m.snomed == code);
    let mut panel_interpretation = d.interpretation.as_ref();
    if obs.snomed == BLOOD_PRESSURE_PANEL
        && let (Some(s), Some(di)) = (find(&rest, SYSTOLIC), find(&rest, DIASTOLIC))
    {
        let (sys, dia) = (rest[s], rest[di]);
        if sys.unit != dia.unit {
            return Err(unprocessable(format!(
                "a Vision blood pressure row holds both readings in one unit, not {} and {}",
                sys.unit, dia.unit
            )));
        }
        let code = terminology::native_code(CodeScheme::ReadV2, BLOOD_PRESSURE_PANEL)
            .unwrap_or(BP_READ_CODE);
        rows.push(row(
            code,
            "",
            &obs.display,
            native_value(sys)?,
            native_value(dia)?,
            &sys.unit,
            [
                interpretation(panel_interpretation.take(), "interpretation")?,
                interpretation(sys.interpretation.as_ref(), "interpretation")?,
                interpretation(dia.interpretation.as_ref(), "interpretation")?,
            ],
        ));
        rest.retain(|m| m.snomed != SYSTOLIC && m.snomed != DIASTOLIC);
    }
    // A single reading's interpretation is its row's; Vision has no other place for it.
    if let Some(whole) = panel_interpretation {
        match rest.as_slice() {
            [only]
                if only.interpretation.is_none() || only.interpretation.as_ref() == Some(whole) => {
            }
            _ => {
                return Err(unprocessable(
                    "Vision holds an interpretation per row: a blood pressure's, or one reading's"
                        .into(),
                ));
            }
        }
    }
    for m in rest {
        let (code, snomed) = match terminology::native_code(CodeScheme::ReadV2, &m.snomed) {
            Some(read) => (read, ""),
            None => ("", m.snomed.as_str()),
        };
        let own = m.interpretation.as_ref().or(panel_interpretation);
        rows.push(row(
            code,
            snomed,
            &m.display,
            native_value(m)?,
            String::new(),
            &m.unit,
            [none(), interpretation(own, "interpretation")?, none()],
        ));
    }
    // The base columns always; the others only when some row fills them.
    let keep: Vec<usize> = (0..columns.len())
        .filter(|&i| i < WRITE_COLUMNS.len() || rows.iter().any(|r| !r[i].is_empty()))
        .collect();
    let header: Vec<&str> = keep.iter().map(|&i| columns[i]).collect();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
        .collect();
    Ok(extract::write(&header, &rows))
}

/// The ids [`crate::VisionAdapter::search`] gives the entries in a journal write's answer
/// (a journal extract of the rows written): the answer is mapped exactly as a search
/// page is, so a BP row's id is the row's `ID` there too.
pub fn written_ids(body: &[u8], nhs: NhsNumber, ods: &OdsCode) -> Result<Vec<String>> {
    let ex = Extract::parse("journal write answer", body)?;
    let pid_col = col(&ex, "PID")?;
    if ex.rows() == 0 {
        return Err(VisionDataError::RowCount {
            extract: ex.name(),
            found: 0,
            expected: "at least 1",
        });
    }
    let owner = JournalOwner {
        pid: id(&ex.row(0), pid_col)?,
        nhs_number: nhs,
        ods: ods.clone(),
    };
    let mut resources = Vec::new();
    map_journal_page(body, &owner, &mut resources)?;
    Ok(resources.iter().map(|r| r.id().to_owned()).collect())
}

/// A record version (a FHIR instant, as [`map_patient`] gives it) as Vision's
/// `LAST_MODIFIED` (`YYYYMMDDHHMMSS`, UK local); `None` when it is not an instant.
pub fn native_timestamp(version: &str) -> Option<String> {
    let (year, month, day, hour, minute, second) =
        gp_fhir::date::parse_instant_utc(version).ok()?;
    let (date, time) = native_date_time(UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    });
    Some(format!("{date}{time}"))
}

/// Renders new contact details as a contact update extract made against `last_modified`
/// (`YYYYMMDDHHMMSS`). Address lines go to `ADDRESS1`–`3` in order, as the read mapping
/// takes them back; more than three is `Unprocessable`. Values are trimmed, as Vision
/// reads them; the language is upper-cased (`cy` → `CY`).
pub fn render_contact(
    details: &ContactDetails,
    last_modified: &str,
) -> std::result::Result<String, AdapterError> {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let mut address = vec![String::new(); 6];
    if let Some(a) = &details.address {
        let lines: Vec<&str> = a
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > 3 {
            return Err(unprocessable(format!(
                "Vision holds at most 3 address lines, not {}",
                lines.len()
            )));
        }
        for (slot, line) in address.iter_mut().zip(lines) {
            *slot = line.to_owned();
        }
        address[3] = a.town.trim().to_owned();
        address[4] = a.county.trim().to_owned();
        address[5] = a.postcode.trim().to_owned();
    }
    let mut row = vec![
        text(&details.home_phone),
        text(&details.mobile),
        text(&details.email),
    ];
    row.extend(address);
    row.push(text(&details.language).to_ascii_uppercase());
    row.push(last_modified.to_owned());
    Ok(extract::write(&CONTACT_COLUMNS, &[row]))
}

/// Reads a contact update's answer (`PID|NHS_NUMBER|LAST_MODIFIED`, one row) for
/// patient `nhs`: the new version, as [`map_patient`] would give it.
pub fn map_contact_answer(body: &[u8], nhs: NhsNumber) -> Result<String> {
    let ex = Extract::parse("contact update answer", body)?;
    let row = exactly_one(&ex)?;
    let nhs_col = col(&ex, "NHS_NUMBER")?;
    let raw = req(&row, nhs_col)?;
    if NhsNumber::parse(raw).ok() != Some(nhs) {
        return Err(invalid(
            &row,
            nhs_col,
            format!("the answer is for {}, but {nhs} was updated", shown(raw)),
        ));
    }
    timestamp(&row, col(&ex, "LAST_MODIFIED")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_pad_with_zeros() {
        assert_eq!(
            vision_date("19980000").map(|d| d.0).as_deref(),
            Some("1998")
        );
        assert_eq!(
            vision_date("19980300").map(|d| d.0).as_deref(),
            Some("1998-03")
        );
        assert_eq!(
            vision_date("19980302").map(|d| d.0).as_deref(),
            Some("1998-03-02")
        );
        for bad in [
            "19980002", "19981300", "19980230", "1998030", "1998-3-2", "00000000",
        ] {
            assert_eq!(vision_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_bodies_are_read() {
        assert_eq!(
            parse_error_body(b"ERROR|PATIENT_NOT_FOUND|No patient|here\r\n"),
            Some(("PATIENT_NOT_FOUND".into(), "No patient|here".into()))
        );
        assert_eq!(parse_error_body(b"PID|NHS\r\n"), None);
        assert_eq!(parse_error_body(b"ERROR||x"), None);
    }

    // ---- writes ----

    fn taken(month: u8, day: u8, hour: u8) -> UtcDateTime {
        UtcDateTime {
            year: 2026,
            month,
            day,
            hour,
            minute: 32,
            second: 5,
        }
    }

    fn m(snomed: &str, display: &str, value: f64, unit: &str) -> Measurement {
        Measurement {
            snomed: snomed.into(),
            display: display.into(),
            value,
            unit: unit.into(),
            interpretation: None,
        }
    }

    fn bp(at: UtcDateTime) -> NewObservation {
        NewObservation {
            key: "k1".into(),
            identifier: None,
            snomed: BLOOD_PRESSURE_PANEL.into(),
            display: "Blood pressure".into(),
            effective: at,
            measurements: vec![
                m(SYSTOLIC, "Systolic blood pressure", 131.0, "mm[Hg]"),
                m(DIASTOLIC, "Diastolic blood pressure", 84.0, "mm[Hg]"),
            ],
            details: Default::default(),
        }
    }

    const WRITE_HEADER: &str = "TYPE|DATE|TIME|CODE|RUBRIC|VALUE1|VALUE2|UNITS\r\n";

    #[test]
    fn a_blood_pressure_is_one_bp_row_in_uk_local_time() {
        // 07:32:05Z in July is 08:32:05 BST.
        assert_eq!(
            render_observation(&bp(taken(7, 14, 7))).unwrap(),
            format!(
                "{WRITE_HEADER}OBSERVATION|20260714|083205|246..|Blood pressure|131|84|mm[Hg]\r\nEOF|1\r\n"
            )
        );
        // GMT in January; BST crossing midnight moves the date.
        assert!(
            render_observation(&bp(taken(1, 14, 7)))
                .unwrap()
                .contains("|20260114|073205|")
        );
        assert!(
            render_observation(&bp(taken(7, 14, 23)))
                .unwrap()
                .contains("|20260715|003205|")
        );
    }

    #[test]
    fn other_measurements_are_one_row_each_in_read_v2() {
        let weight = NewObservation {
            key: "k2".into(),
            identifier: None,
            snomed: "27113001".into(),
            display: "Body weight".into(),
            effective: taken(1, 2, 9),
            measurements: vec![m("27113001", "Body weight", 72.4, "kg")],
            details: Default::default(),
        };
        assert_eq!(
            render_observation(&weight).unwrap(),
            format!(
                "{WRITE_HEADER}OBSERVATION|20260102|093205|22A..|Body weight|72.4||kg\r\nEOF|1\r\n"
            )
        );
        // A panel with one part only, and a part given alone, are ordinary rows.
        let mut half = bp(taken(1, 2, 9));
        half.measurements.remove(1);
        assert!(
            render_observation(&half)
                .unwrap()
                .contains("|2469.|Systolic blood pressure|131||mm[Hg]\r\n")
        );
    }

    fn coded(system: &str, code: &str, display: &str) -> Coded {
        Coded {
            system: system.into(),
            code: code.into(),
            display: Some(display.into()),
        }
    }

    #[test]
    fn concepts_without_a_read_v2_code_are_written_by_snomed_code_alone() {
        let mut o = bp(taken(1, 2, 9));
        o.measurements
            .push(m("431314004", "Peripheral oxygen saturation", 97.0, "%"));
        assert_eq!(
            render_observation(&o).unwrap(),
            "TYPE|DATE|TIME|CODE|RUBRIC|VALUE1|VALUE2|UNITS|SNOMED_CODE\r\n\
             OBSERVATION|20260102|093205|246..|Blood pressure|131|84|mm[Hg]|\r\n\
             OBSERVATION|20260102|093205||Peripheral oxygen saturation|97||%|431314004\r\n\
             EOF|2\r\n"
        );
    }

    #[test]
    fn reading_details_are_vision_columns() {
        let mut o = bp(taken(7, 14, 7));
        o.measurements[0].interpretation = Some(coded(INTERPRETATION_SYSTEM, "H", "High"));
        o.measurements[1].interpretation = Some(coded(INTERPRETATION_SYSTEM, "N", "Normal"));
        o.details = gp_adapter::ReadingDetails {
            date_only: true,
            interpretation: Some(coded(INTERPRETATION_SYSTEM, "A", "Abnormal")),
            body_site: Some(coded(SNOMED_SYSTEM, "368209003", "Right upper arm")),
            performer: Some("staff-1".into()),
            ..Default::default()
        };
        // Date-only: the calendar date as given, no TIME (07:32 UTC would be 08:32 BST).
        assert_eq!(
            render_observation(&o).unwrap(),
            "TYPE|DATE|TIME|CODE|RUBRIC|VALUE1|VALUE2|UNITS|AUTHOR|INTERPRETATION|INTERPRETATION_TERM|INTERPRETATION1|INTERPRETATION1_TERM|INTERPRETATION2|INTERPRETATION2_TERM|BODY_SITE|BODY_SITE_RUBRIC\r\n\
             OBSERVATION|20260714||246..|Blood pressure|131|84|mm[Hg]|staff-1|A|Abnormal|H|High|N|Normal|368209003|Right upper arm\r\n\
             EOF|1\r\n"
        );
        // A single reading's whole interpretation is its row's VALUE1 interpretation.
        let weight = NewObservation {
            key: "k2".into(),
            identifier: None,
            snomed: "27113001".into(),
            display: "Body weight".into(),
            effective: taken(1, 2, 9),
            measurements: vec![m("27113001", "Body weight", 72.4, "kg")],
            details: gp_adapter::ReadingDetails {
                interpretation: Some(coded(INTERPRETATION_SYSTEM, "H", "High")),
                ..Default::default()
            },
        };
        assert!(
            render_observation(&weight)
                .unwrap()
                .ends_with("|INTERPRETATION1|INTERPRETATION1_TERM\r\nOBSERVATION|20260102|093205|22A..|Body weight|72.4||kg|H|High\r\nEOF|1\r\n")
        );
        // What Vision cannot hold is refused, not dropped.
        for details in [
            gp_adapter::ReadingDetails {
                method: Some(coded(SNOMED_SYSTEM, "37931006", "Auscultation")),
                ..Default::default()
            },
            gp_adapter::ReadingDetails {
                device: Some("Cuff".into()),
                ..Default::default()
            },
            gp_adapter::ReadingDetails {
                original_codings: vec![coded("http://loinc.org", "85354-9", "BP panel")],
                ..Default::default()
            },
            gp_adapter::ReadingDetails {
                body_site: Some(coded("http://example.org/sites", "arm", "Arm")),
                ..Default::default()
            },
        ] {
            let mut refused = bp(taken(1, 2, 9));
            refused.details = details;
            assert!(
                matches!(
                    render_observation(&refused),
                    Err(AdapterError::Unprocessable { .. })
                ),
                "{:?}",
                refused.details
            );
        }
    }

    #[test]
    fn qualifier_columns_are_read_strictly() {
        let header = "PID|ID|DATE|CODE|SNOMED_CODE|DMD_CODE|RUBRIC|VALUE1|VALUE2|END_DATE|SEVERITY|TIME|TYPE|STATUS|UNITS|CATEGORY|AUTHOR|CONSULTATION_ID|CONFIDENTIAL|DOSAGE|QUANTITY|QUANTITY_UNITS|PRESCRIPTION_TYPE|BATCH|DOSE_NO|REACTION_CODE|REACTION_SNOMED|REACTION_RUBRIC|INTERPRETATION|INTERPRETATION_TERM|INTERPRETATION1|INTERPRETATION1_TERM|INTERPRETATION2|INTERPRETATION2_TERM|BODY_SITE|BODY_SITE_RUBRIC";
        let owner = JournalOwner {
            pid: "p1".into(),
            nhs_number: NhsNumber::parse("9000000009").unwrap(),
            ods: OdsCode::parse("B82617").unwrap(),
        };
        let page = |row: &str| format!("{header}\r\n{row}\r\nEOF|1\r\n");
        let weight =
            "p1|j1|20260714|22A..|27113001||Body weight|72.4|||||OBSERVATION||kg||||N|||||||||";
        let good = map_journal(
            &[page(&format!("{weight}|||H|High|||7569003|Finger"))],
            &owner,
        )
        .unwrap();
        let Resource::Observation(o) = &good[0] else {
            panic!("{good:?}")
        };
        assert_eq!(
            o.interpretation,
            vec![coded(INTERPRETATION_SYSTEM, "H", "High").concept()]
        );
        assert_eq!(
            o.body_site,
            Some(coded(SNOMED_SYSTEM, "7569003", "Finger").concept())
        );
        assert_eq!(o.effective_date_time.as_deref(), Some("2026-07-14"));
        for bad in [
            // A panel's or second reading's interpretation on a single reading.
            "A|Abnormal||||||",
            "||||N|Normal||",
            // A term without a code; a body site that is not a SNOMED CT id.
            "|High||||||",
            "||||||arm|Arm",
            "||H H|||||",
        ] {
            assert!(
                map_journal(&[page(&format!("{weight}|{bad}"))], &owner).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn measurements_vision_cannot_hold_are_unprocessable() {
        let mut mixed = bp(taken(1, 2, 9));
        mixed.measurements[1].unit = "kPa".into();
        assert!(matches!(
            render_observation(&mixed),
            Err(AdapterError::Unprocessable { .. })
        ));
        let mut empty = bp(taken(1, 2, 9));
        empty.measurements.clear();
        assert!(matches!(
            render_observation(&empty),
            Err(AdapterError::Unprocessable { .. })
        ));
        let mut nan = bp(taken(1, 2, 9));
        nan.measurements[0].value = f64::NAN;
        assert!(matches!(
            render_observation(&nan),
            Err(AdapterError::Unprocessable { .. })
        ));
    }

    #[test]
    fn contact_details_are_one_row_against_last_modified() {
        let details = ContactDetails {
            home_phone: Some(" 01632 960123 ".into()),
            mobile: None,
            email: Some("a|b@example.com".into()),
            address: Some(gp_adapter::HomeAddress {
                lines: vec!["12 Harness Row".into(), "".into(), "Testville".into()],
                town: "Leeds".into(),
                county: "West Yorkshire".into(),
                postcode: "LS1 4AP".into(),
            }),
            language: Some("cy".into()),
        };
        assert_eq!(
            render_contact(&details, "20240615103000").unwrap(),
            "HOME_PHONE|MOBILE_PHONE|EMAIL|ADDRESS1|ADDRESS2|ADDRESS3|TOWN|COUNTY|POSTCODE|MAIN_LANGUAGE|LAST_MODIFIED\r\n\
             01632 960123||\"a|b@example.com\"|12 Harness Row|Testville||Leeds|West Yorkshire|LS1 4AP|CY|20240615103000\r\n\
             EOF|1\r\n"
        );
        let nothing = render_contact(&ContactDetails::default(), "20240615103000").unwrap();
        assert!(
            nothing.contains("\r\n||||||||||20240615103000\r\n"),
            "{nothing}"
        );
        let mut four = details.clone();
        if let Some(a) = four.address.as_mut() {
            a.lines = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        }
        assert!(matches!(
            render_contact(&four, "20240615103000"),
            Err(AdapterError::Unprocessable { .. })
        ));
    }

    /// The written address reads back as the lines, town, county and postcode written.
    #[test]
    fn contact_rows_round_trip_through_the_read_mapping() {
        let details = ContactDetails {
            home_phone: Some("01632 960123".into()),
            mobile: Some("07700 900456".into()),
            email: Some("x@example.com".into()),
            address: Some(gp_adapter::HomeAddress {
                lines: vec!["Flat 2".into(), "12 Harness Row".into(), "Testville".into()],
                town: "Leeds".into(),
                county: "West Yorkshire".into(),
                postcode: "LS1 4AP".into(),
            }),
            language: Some("pl".into()),
        };
        let body = render_contact(&details, "20240615103000").unwrap();
        let ex = Extract::parse("contact update", body.as_bytes()).unwrap();
        let row = ex.row(0);
        let a = address(&row, &address_cols(&ex).unwrap()).unwrap();
        assert_eq!(a.line, vec!["Flat 2", "12 Harness Row", "Testville"]);
        assert_eq!(a.city.as_deref(), Some("Leeds"));
        assert_eq!(a.district.as_deref(), Some("West Yorkshire"));
        assert_eq!(a.postal_code.as_deref(), Some("LS1 4AP"));
        let lang = col(&ex, "MAIN_LANGUAGE").unwrap();
        let code = language_code(&row, lang, opt(&row, lang).unwrap()).unwrap();
        assert_eq!(code, "pl");
    }

    #[test]
    fn versions_are_last_modified_in_uk_local_time() {
        // What map_patient gives for 20240615103000, and the same instant in UTC.
        for v in ["2024-06-15T10:30:00+01:00", "2024-06-15T09:30:00Z"] {
            assert_eq!(
                native_timestamp(v).as_deref(),
                Some("20240615103000"),
                "{v}"
            );
        }
        assert_eq!(
            native_timestamp("2024-01-15T10:30:00+00:00").as_deref(),
            Some("20240115103000")
        );
        for bad in ["", "W/\"3\"", "2024-06-15", "20240615103000"] {
            assert_eq!(native_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn write_answers_are_read() {
        let nhs = NhsNumber::parse("9658218865").unwrap();
        let ods = OdsCode::parse("B82617").unwrap();
        let cols: Vec<&str> = "PID|ID|DATE|CODE|SNOMED_CODE|DMD_CODE|RUBRIC|VALUE1|VALUE2|END_DATE|SEVERITY|TIME|TYPE|STATUS|UNITS|CATEGORY|AUTHOR|CONSULTATION_ID|CONFIDENTIAL|DOSAGE|QUANTITY|QUANTITY_UNITS|PRESCRIPTION_TYPE|BATCH|DOSE_NO|REACTION_CODE|REACTION_SNOMED|REACTION_RUBRIC".split('|').collect();
        let row = |set: &[(&str, &str)]| -> Vec<String> {
            cols.iter()
                .map(|c| {
                    set.iter()
                        .find(|(k, _)| k == c)
                        .map_or(String::new(), |(_, v)| (*v).to_owned())
                })
                .collect()
        };
        let common = [
            ("PID", "P1"),
            ("DATE", "20260714"),
            ("TIME", "083205"),
            ("TYPE", "OBSERVATION"),
            ("CONFIDENTIAL", "N"),
        ];
        let body = extract::write(
            &cols,
            &[
                row(&[
                    &common[..],
                    &[
                        ("ID", "AB-12"),
                        ("CODE", "246.."),
                        ("VALUE1", "131"),
                        ("VALUE2", "84"),
                        ("UNITS", "mm[Hg]"),
                    ],
                ]
                .concat()),
                row(&[
                    &common[..],
                    &[
                        ("ID", "CD-34"),
                        ("CODE", "22A.."),
                        ("VALUE1", "72.4"),
                        ("UNITS", "kg"),
                    ],
                ]
                .concat()),
            ],
        );
        assert_eq!(
            written_ids(body.as_bytes(), nhs, &ods).unwrap(),
            vec!["ab-12", "cd-34"]
        );
        let empty = extract::write(&cols, &[]);
        assert!(written_ids(empty.as_bytes(), nhs, &ods).is_err());

        let answer = "PID|NHS_NUMBER|LAST_MODIFIED\r\nP1|9658218865|20240615103001\r\nEOF|1\r\n";
        assert_eq!(
            map_contact_answer(answer.as_bytes(), nhs).unwrap(),
            "2024-06-15T10:30:01+01:00"
        );
        let other = "PID|NHS_NUMBER|LAST_MODIFIED\r\nP1|9000000009|20240615103001\r\nEOF|1\r\n";
        assert!(map_contact_answer(other.as_bytes(), nhs).is_err());
    }
}
