//! Vision extracts → UK Core R4. Pure functions, no I/O.
//!
//! An extract is mapped whole or not at all: any field that is missing or malformed
//! fails it with a [`VisionDataError`] naming the extract, row and column, so a caller
//! never sees a half-mapped resource. The format is `docs/native-formats/vision.md`;
//! the FHIR produced is the same shape as gp-adapter-emis produces for the same facts.

use gp_adapter::PatientFlags;
use gp_adapter::terminology::{self, CodeScheme};
use gp_adapter::time::local_date_time;
use gp_adapter::uk_core::{self, meta};
use gp_fhir::model::{
    Address, AllergyIntolerance, AllergyReaction, Annotation, CodeableConcept, Condition,
    ContactPoint, Dosage, Encounter, EncounterParticipant, HumanName, Identifier, Immunization,
    ImmunizationPerformer, MedicationStatement, NhsVerification, Observation, Organization,
    Patient, Period, Practitioner, ProtocolApplied, Quantity, Reference, Resource,
    SDS_USER_ID_SYSTEM,
};
use gp_fhir::{NhsNumber, OdsCode};

use crate::error::VisionDataError;
use crate::extract::{Extract, Row};

/// Base of the identifier systems holding Vision ids (`{base}{type}-id`).
pub const VISION_ID_BASE: &str = "https://inps.co.uk/Id/";
/// GMC reference number of a doctor.
pub use gp_adapter::uk_core::GMC_SYSTEM;
/// Read v2 code of Vision's one-row blood pressure reading.
pub const BP_READ_CODE: &str = "246..";
/// SNOMED CT codes a BP row may carry instead of a Read v2 code.
const BP_SNOMED: [&str; 2] = ["75367002", "163020007"];
/// What a BP row becomes: (Read v2 code, term, id suffix) for VALUE1 and VALUE2.
const BP_PARTS: [(&str, &str, &str); 2] = [
    ("2469.", "Systolic blood pressure", "sys"),
    ("246A.", "Diastolic blood pressure", "dia"),
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

/// A bounded, printable echo of bad native text for error messages.
fn shown(v: &str) -> String {
    v.chars().take(40).filter(|c| !c.is_control()).collect()
}

/// Columns looked up once per extract; `Col` carries the name for messages.
#[derive(Clone, Copy)]
struct Col {
    name: &'static str,
    index: usize,
}

fn col(ex: &Extract, name: &'static str) -> Result<Col> {
    Ok(Col {
        name,
        index: ex.column(name)?,
    })
}

fn opt<'e>(row: &Row<'e, '_>, c: Col) -> Option<&'e str> {
    row.opt(c.index)
}

fn req<'e>(row: &Row<'e, '_>, c: Col) -> Result<&'e str> {
    row.opt(c.index).ok_or(VisionDataError::Missing {
        extract: row.extract(),
        row: row.number(),
        column: c.name,
    })
}

fn invalid(row: &Row, c: Col, reason: impl Into<String>) -> VisionDataError {
    VisionDataError::Invalid {
        extract: row.extract(),
        row: row.number(),
        column: c.name,
        reason: reason.into(),
    }
}

/// `Y`/`N` (empty = `N`).
fn yes_no(row: &Row, c: Col) -> Result<bool> {
    match opt(row, c) {
        None | Some("N" | "n") => Ok(false),
        Some("Y" | "y") => Ok(true),
        Some(v) => Err(invalid(row, c, format!("'{}' is not Y or N", shown(v)))),
    }
}

fn id_value(raw: &str) -> Option<String> {
    // Room for the `-sys`/`-dia` suffix of split BP rows within FHIR's 64.
    let ok = (1..=60).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| raw.to_ascii_lowercase())
}

/// A Vision id as a FHIR id: `A-Za-z0-9-.`, at most 60 characters, lower-cased.
fn id(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    id_value(raw).ok_or_else(|| invalid(row, c, format!("'{}' is not a Vision id", shown(raw))))
}

fn opt_id(row: &Row, c: Col) -> Result<Option<String>> {
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

// ---- dates ---------------------------------------------------------------------------

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn ymd(s: &str) -> Option<(i32, u8, u8)> {
    if s.len() != 8 {
        return None;
    }
    Some((
        i32::try_from(digits(s.get(0..4)?)?).ok()?,
        u8::try_from(digits(s.get(4..6)?)?).ok()?,
        u8::try_from(digits(s.get(6..8)?)?).ok()?,
    ))
}

fn check_calendar(y: i32, m: u8, d: u8) -> bool {
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
        (0, 0) if (1..=9999).contains(&y) => Some((format!("{y:04}"), None)),
        (1..=12, 0) if (1..=9999).contains(&y) => Some((format!("{y:04}-{m:02}"), None)),
        _ if check_calendar(y, m, d) => Some((format!("{y:04}-{m:02}-{d:02}"), Some((y, m, d)))),
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

/// `DATE` plus its `TIME` (`HHMM`, UK local, only with a full date) → FHIR date/dateTime.
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
    let hm = (t.len() == 4)
        .then(|| Some((digits(t.get(0..2)?)?, digits(t.get(2..4)?)?)))
        .flatten()
        .filter(|&(h, mi)| h < 24 && mi < 60)
        .ok_or_else(|| invalid(row, time_col, format!("'{}' is not HHMM", shown(t))))?;
    Ok(Some(local_date_time(y, m, d, (hm.0 as u8, hm.1 as u8, 0))))
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
fn gender(row: &Row, c: Col) -> Result<Option<String>> {
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

fn vision_id(kind: &str, value: &str) -> Identifier {
    Identifier::new(&format!("{VISION_ID_BASE}{kind}-id"), value)
}

fn practitioner_ref(id: Option<String>) -> Option<Reference> {
    id.map(|g| Reference::to("Practitioner", &g))
}

fn exactly_one<'e, 'a>(ex: &'e Extract<'a>) -> Result<Row<'e, 'a>> {
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
        communication: Vec::new(),
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
    let ex = Extract::parse("journal extract", body)?;
    let cols = JournalCols::of(&ex)?;
    let patient_ref = Reference::to("Patient", &owner.nhs_number.to_string());
    let org_ref = Reference::to("Organization", owner.ods.as_str());
    let ctx = Ctx {
        cols: &cols,
        patient_ref: &patient_ref,
        org_ref: &org_ref,
    };
    // Map into a scratch list so a bad row leaves `out` untouched.
    let mut page = Vec::with_capacity(ex.rows() + 8);
    for row in ex.iter() {
        let pid = req(&row, cols.pid)?;
        if !pid.eq_ignore_ascii_case(&owner.pid) {
            return Err(invalid(
                &row,
                cols.pid,
                format!("the row is for patient {}, not {}", shown(pid), owner.pid),
            ));
        }
        map_row(&ctx, &row, &mut page)?;
    }
    out.append(&mut page);
    Ok(ex.rows())
}

/// Maps a whole journal given as pages; the pure core of a search.
pub fn map_journal<B: AsRef<[u8]>>(pages: &[B], owner: &JournalOwner) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for page in pages {
        map_journal_page(page.as_ref(), owner, &mut out)?;
    }
    Ok(out)
}

struct Ctx<'c> {
    cols: &'c JournalCols,
    patient_ref: &'c Reference,
    org_ref: &'c Reference,
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
        return Ok(Some(terminology::coded(CodeScheme::Dmd, d, term, None)));
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
            CodeScheme::ReadV2,
            code,
            term,
            sct,
        )));
    }
    Ok(match (sct, dmd_code) {
        (Some(s), _) => Some(terminology::coded(CodeScheme::Snomed, s, term, None)),
        (None, Some(d)) => Some(terminology::coded(CodeScheme::Dmd, d, term, None)),
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
    Ok(opt_id(row, ctx.cols.consultation)?.map(|e| Reference::to("Encounter", &e)))
}

fn map_row(ctx: &Ctx, row: &Row, out: &mut Vec<Resource>) -> Result<()> {
    let c = ctx.cols;
    let id = id(row, c.id)?;
    let confidential = yes_no(row, c.confidential)?;
    let date = date_time(row, c.date, c.time)?;
    let author = practitioner_ref(opt_id(row, c.author)?);
    let identifier = vec![vision_id("journal", &id)];
    let patient = ctx.patient_ref.clone();
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
                identifier,
                status: "finished".into(),
                class: uk_core::ambulatory(),
                type_: coded(row, c.code, c.snomed, None, c.rubric, false)?
                    .into_iter()
                    .collect(),
                subject: patient,
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
                for ((code, term, suffix), value) in BP_PARTS.iter().zip([systolic, value2]) {
                    out.push(Resource::Observation(Observation {
                        id: format!("{id}-{suffix}"),
                        meta: meta("Observation", confidential),
                        identifier: identifier.clone(),
                        status: "final".into(),
                        code: terminology::coded(CodeScheme::ReadV2, code, term, None),
                        subject: patient.clone(),
                        encounter: encounter.clone(),
                        effective_date_time: date.clone(),
                        performer: author.clone().into_iter().collect(),
                        value_quantity: Some(quantity(value, Some(units.unwrap_or("mm[Hg]")))),
                        ..Observation::default()
                    }));
                }
                return Ok(());
            }
            out.push(Resource::Observation(Observation {
                id,
                meta: meta("Observation", confidential),
                identifier,
                status: "final".into(),
                code: required_code(ctx, row, false)?,
                subject: patient,
                encounter,
                effective_date_time: date,
                performer: author.into_iter().collect(),
                value_quantity: value1.map(|v| quantity(v, units)),
                ..Observation::default()
            }));
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
                id,
                meta: meta("Condition", confidential),
                identifier,
                clinical_status: Some(uk_core::condition_clinical_status(status)),
                verification_status: Some(uk_core::condition_confirmed()),
                category: vec![uk_core::problem_list_item()],
                code: required_code(ctx, row, false)?,
                subject: patient,
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
                id,
                meta: meta("Immunization", confidential),
                identifier,
                status: "completed".into(),
                vaccine_code: required_code(ctx, row, false)?,
                patient,
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
            identifier,
            confidential,
            date,
            author,
        )?)),
        "THERAPY" => out.push(Resource::MedicationStatement(map_therapy(
            ctx,
            row,
            id,
            identifier,
            confidential,
            date,
            author,
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
    identifier: Vec<Identifier>,
    confidential: bool,
    date: Option<String>,
    author: Option<Reference>,
) -> Result<AllergyIntolerance> {
    let c = ctx.cols;
    let encounter = encounter_ref(ctx, row)?;
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
        identifier,
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
                text: format!("Ended {d}"),
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
    identifier: Vec<Identifier>,
    confidential: bool,
    start: Option<String>,
    author: Option<Reference>,
) -> Result<MedicationStatement> {
    let c = ctx.cols;
    let context = encounter_ref(ctx, row)?;
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
    let quantity = opt(row, c.quantity).map(|q| match opt(row, c.quantity_units) {
        Some(u) => format!("{q} {u}"),
        None => q.to_owned(),
    });
    let note = match (kind, quantity) {
        (None, None) => None,
        (Some(k), None) => Some(format!("{k} prescription")),
        (None, Some(q)) => Some(format!("Quantity {q}")),
        (Some(k), Some(q)) => Some(format!("{k} prescription, quantity {q}")),
    };
    Ok(MedicationStatement {
        meta: meta("MedicationStatement", confidential),
        identifier,
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
}
