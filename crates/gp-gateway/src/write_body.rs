//! Resources suppliers write, checked before anything reaches a GP system.
//!
//! Each check names the element at fault as a FHIRPath (`Observation.component[1].valueQuantity.code`)
//! in the OperationOutcome's `expression`. What a GP system cannot hold is refused, never
//! silently dropped: a supplier must know that what it captured is what was recorded.

use gp_adapter::{Coded, Measurement, NewObservation, ReadingDetails, ReadingSupport, UtcDateTime};
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use gp_fhir::model::{SNOMED, UCUM};
use gp_fhir::{FhirError, IssueType, NhsNumber, SpineCode};
use serde_json::{Map, Value};

use crate::vitals::{BLOOD_PRESSURE_PANEL, VITALS, Vital, vital};

/// A write body the gateway refuses, with the element at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub status: u16,
    pub code: SpineCode,
    pub issue: IssueType,
    /// FHIRPath of the element at fault (empty for the body as a whole).
    pub path: String,
    pub message: String,
}

impl Invalid {
    /// 422 INVALID_RESOURCE at `path`.
    pub fn resource(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let message = format!("{path}: {}", message.into());
        Self {
            status: 422,
            code: SpineCode::InvalidResource,
            issue: IssueType::Invalid,
            path,
            message,
        }
    }

    /// 400 INVALID_VALUE for a body that is not what the interaction takes at all.
    pub fn request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: SpineCode::InvalidValue,
            issue: IssueType::Structure,
            path: String::new(),
            message: message.into(),
        }
    }
}

impl FhirError for Invalid {
    fn status(&self) -> u16 {
        self.status
    }
    fn spine_code(&self) -> SpineCode {
        self.code
    }
    fn issue_type(&self) -> IssueType {
        self.issue
    }
    fn expression(&self) -> Vec<String> {
        if self.path.is_empty() {
            Vec::new()
        } else {
            vec![self.path.clone()]
        }
    }
}

/// Parses a JSON body with the structural prechecks (size, syntax, depth).
pub fn parse_json(body: &[u8]) -> Result<Value, Invalid> {
    if body.is_empty() {
        return Err(Invalid::request("the request has no body"));
    }
    gp_fhir::validate::precheck(body).map_err(|e| Invalid::request(e.to_string()))
}

/// The JSON type name, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| Invalid::resource(path, format!("must be an object, not {}", kind(v))))
}

pub(crate) fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, Invalid> {
    match v.as_array() {
        Some(a) if a.is_empty() => Err(Invalid::resource(
            path,
            "must not be an empty array (leave the element out instead)",
        )),
        Some(a) => Ok(a),
        None => Err(Invalid::resource(
            path,
            format!("must be an array, not {}", kind(v)),
        )),
    }
}

/// A non-empty string of at most `max` characters without control characters.
pub(crate) fn string<'a>(v: &'a Value, path: &str, max: usize) -> Result<&'a str, Invalid> {
    let s = v
        .as_str()
        .ok_or_else(|| Invalid::resource(path, format!("must be a string, not {}", kind(v))))?;
    if s.trim().is_empty() {
        return Err(Invalid::resource(path, "must not be empty or blank"));
    }
    if s.chars().count() > max {
        return Err(Invalid::resource(
            path,
            format!("is longer than {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Invalid::resource(
            path,
            "must not contain control characters",
        ));
    }
    Ok(s)
}

/// Refuses any key of `map` not in `allowed`: an element of the FHIR type the gateway
/// does not record, or no element of the type at all.
pub(crate) fn only(
    map: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    known: &[&str],
) -> Result<(), Invalid> {
    only_keys(map.keys().map(String::as_str), path, allowed, known)
}

/// [`only`] for keys read without their values (a body too large to hold as JSON values).
pub(crate) fn only_keys<'k>(
    keys: impl IntoIterator<Item = &'k str>,
    path: &str,
    allowed: &[&str],
    known: &[&str],
) -> Result<(), Invalid> {
    for key in keys {
        if allowed.contains(&key) {
            continue;
        }
        let shown = crate::routes::shown(key);
        let at = format!("{path}.{shown}");
        let supported = allowed.join(", ");
        return Err(if known.contains(&key) || key.starts_with('_') {
            Invalid::resource(
                at,
                format!(
                    "is not recorded in GP systems through this API, so it is refused rather than dropped; supported here: {supported}"
                ),
            )
        } else {
            Invalid::resource(
                at,
                format!("is not an element of this FHIR R4 type; supported here: {supported}"),
            )
        });
    }
    Ok(())
}

/// Elements every resource may carry that writes do not record.
pub(crate) const RESOURCE_ELEMENTS: &[&str] = &[
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];

const OBSERVATION_ELEMENTS: &[&str] = &[
    "basedOn",
    "partOf",
    "focus",
    "encounter",
    "effectivePeriod",
    "effectiveTiming",
    "effectiveInstant",
    "issued",
    "performer",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "dataAbsentReason",
    "interpretation",
    "note",
    "bodySite",
    "method",
    "specimen",
    "device",
    "referenceRange",
    "hasMember",
    "derivedFrom",
];

fn supported_codes() -> String {
    let mut out = format!(
        "{BLOOD_PRESSURE_PANEL} Blood pressure (LOINC 85354-9; with systolic and diastolic components)"
    );
    for v in VITALS {
        let loinc = crate::vitals::loinc_for(v.snomed);
        let loinc = if loinc.is_empty() {
            String::new()
        } else {
            format!("LOINC {}; ", loinc.join(", "))
        };
        out.push_str(&format!(", {} {} ({loinc}{})", v.snomed, v.display, v.unit));
    }
    out
}

/// An Observation a supplier may write, checked and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingObservation {
    /// The patient it is about (from `subject`).
    pub nhs_number: NhsNumber,
    /// `identifier[0]` as `(system, value)`, when given.
    pub identifier: Option<(String, String)>,
    /// What the GP system is asked to record (`key` empty: the caller sets it).
    pub observation: NewObservation,
    /// Where each [`ReadingDetails`] element was given, to name it in a refusal.
    pub detail_paths: DetailPaths,
}

/// The FHIRPath of each reading detail the body gave (empty: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailPaths {
    pub date_only: String,
    pub interpretation: String,
    pub body_site: String,
    pub method: String,
    pub device: String,
    pub performer: String,
}

impl IncomingObservation {
    /// Refuses the first detail the patient's GP system (`system`, holding `support`)
    /// cannot record, naming the element: it is refused, never dropped. The supplier's
    /// other codings are kept where the system holds them and otherwise not sent (the
    /// SNOMED CT coding GP systems record says what was measured).
    pub fn fit_to(&mut self, support: ReadingSupport, system: &str) -> Result<(), Invalid> {
        let p = &self.detail_paths;
        for (given, held, path, what) in [
            (
                !p.date_only.is_empty(),
                support.date_only,
                &p.date_only,
                "a date without a time of day",
            ),
            (
                !p.interpretation.is_empty(),
                support.interpretation,
                &p.interpretation,
                "an interpretation",
            ),
            (
                !p.body_site.is_empty(),
                support.body_site,
                &p.body_site,
                "a body site",
            ),
            (!p.method.is_empty(), support.method, &p.method, "a method"),
            (!p.device.is_empty(), support.device, &p.device, "a device"),
            (
                !p.performer.is_empty(),
                support.performer,
                &p.performer,
                "a performer",
            ),
        ] {
            if given && !held {
                return Err(Invalid::resource(
                    path.clone(),
                    format!(
                        "{system}, which holds this patient's record, cannot record {what} with a reading, so the reading is refused rather than recorded without it"
                    ),
                ));
            }
        }
        if !support.original_codings {
            self.observation.details.original_codings.clear();
        }
        Ok(())
    }
}

const CODING_KEYS: &[&str] = &["system", "code", "display", "version", "userSelected"];
const CODING_KNOWN: &[&str] = &["id", "extension"];
const CONCEPT_KEYS: &[&str] = &["coding", "text"];

/// A CodeableConcept's codings, checked: `(system, code, display)` each.
fn codings(v: &Value, path: &str) -> Result<Vec<Coded>, Invalid> {
    let cc = object(v, path)?;
    only(cc, path, CONCEPT_KEYS, &["id", "extension"])?;
    if let Some(text) = cc.get("text") {
        string(text, &format!("{path}.text"), 1000)?;
    }
    let codings = array(
        cc.get("coding")
            .ok_or_else(|| Invalid::resource(format!("{path}.coding"), "is required"))?,
        &format!("{path}.coding"),
    )?;
    let mut out = Vec::with_capacity(codings.len());
    for (i, c) in codings.iter().enumerate() {
        let at = format!("{path}.coding[{i}]");
        let coding = object(c, &at)?;
        only(coding, &at, CODING_KEYS, CODING_KNOWN)?;
        let system = match coding.get("system") {
            Some(s) => string(s, &format!("{at}.system"), 200)?,
            None => return Err(Invalid::resource(format!("{at}.system"), "is required")),
        };
        let code = match coding.get("code") {
            Some(s) => string(s, &format!("{at}.code"), 100)?,
            None => return Err(Invalid::resource(format!("{at}.code"), "is required")),
        };
        let mut display = None;
        for key in ["display", "version"] {
            if let Some(d) = coding.get(key) {
                let d = string(d, &format!("{at}.{key}"), 500)?;
                if key == "display" {
                    display = Some(d.to_owned());
                }
            }
        }
        if let Some(u) = coding.get("userSelected")
            && !u.is_boolean()
        {
            return Err(Invalid::resource(
                format!("{at}.userSelected"),
                "must be a boolean",
            ));
        }
        out.push(Coded {
            system: system.to_owned(),
            code: code.to_owned(),
            display,
        });
    }
    Ok(out)
}

/// `http://loinc.org`.
const LOINC: &str = "http://loinc.org";

/// What a reading's `code` names: the SNOMED CT concept GP systems record it as (its
/// SNOMED CT coding of a reading suppliers may write, or else the concept its LOINC
/// coding maps to), and the supplier's other codings, in order.
fn concept(v: &Value, path: &str) -> Result<(String, Vec<Coded>), Invalid> {
    let all = codings(v, path)?;
    let writable = |c: &str| c == BLOOD_PRESSURE_PANEL || vital(c).is_some();
    let from_snomed = all
        .iter()
        .position(|c| c.system == SNOMED && writable(&c.code));
    let from_loinc: Vec<(usize, &'static str)> = all
        .iter()
        .enumerate()
        .filter(|(_, c)| c.system == LOINC)
        .filter_map(|(i, c)| crate::vitals::snomed_for_loinc(&c.code).map(|s| (i, s)))
        .collect();
    let chosen = match from_snomed {
        Some(i) => all[i].code.clone(),
        None => match from_loinc.first() {
            Some((_, s)) => (*s).to_owned(),
            None => {
                if let Some(c) = all.iter().find(|c| c.system == SNOMED) {
                    return Err(Invalid::resource(
                        path,
                        format!(
                            "SNOMED CT {} is not a reading suppliers may write to GP records; supported: {}",
                            crate::routes::shown(&c.code),
                            supported_codes()
                        ),
                    ));
                }
                let what = if all.iter().any(|c| c.system == LOINC) {
                    "names no reading suppliers may write to GP records"
                } else {
                    "needs a SNOMED CT or LOINC coding"
                };
                return Err(Invalid::resource(
                    format!("{path}.coding"),
                    format!(
                        "{what} (system {SNOMED} or {LOINC}); supported: {}",
                        supported_codes()
                    ),
                ));
            }
        },
    };
    if let Some((i, s)) = from_loinc.iter().find(|(_, s)| *s != chosen) {
        return Err(Invalid::resource(
            format!("{path}.coding[{i}]"),
            format!(
                "LOINC {} is recorded as SNOMED CT {s}, but the reading is coded as SNOMED CT {chosen}: the codings must name one reading",
                crate::routes::shown(&all[*i].code)
            ),
        ));
    }
    let originals = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != from_snomed)
        .map(|(_, c)| c)
        .collect();
    Ok((chosen, originals))
}

/// A CodeableConcept of one coding in one of `systems` (an interpretation, a body site,
/// a method): what the GP system records.
fn one_code(v: &Value, path: &str, systems: &[&str]) -> Result<Coded, Invalid> {
    let all = codings(v, path)?;
    match all.as_slice() {
        [c] if systems.contains(&c.system.as_str()) => Ok(c.clone()),
        [c] => Err(Invalid::resource(
            format!("{path}.coding[0].system"),
            format!(
                "'{}' is not recorded here; use {}",
                crate::routes::shown(&c.system),
                systems.join(" or ")
            ),
        )),
        _ => Err(Invalid::resource(
            format!("{path}.coding"),
            "must hold one coding: GP systems record one code here",
        )),
    }
}

/// `interpretation` (0..*): GP systems record one.
fn interpretation(v: &Value, path: &str) -> Result<Coded, Invalid> {
    let items = array(v, path)?;
    if items.len() > 1 {
        return Err(Invalid::resource(
            path,
            "holds more than one interpretation; GP systems record one",
        ));
    }
    one_code(&items[0], &format!("{path}[0]"), &[INTERPRETATION, SNOMED])
}

/// v3 ObservationInterpretation (`H`, `L`, `N`, …).
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// A UCUM Quantity checked against `vital`.
fn quantity(v: &Value, path: &str, vital: &Vital) -> Result<f64, Invalid> {
    let q = object(v, path)?;
    only(
        q,
        path,
        &["value", "unit", "system", "code"],
        &["id", "extension", "comparator"],
    )?;
    let value = match q.get("value") {
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        Some(other) => {
            return Err(Invalid::resource(
                format!("{path}.value"),
                format!("must be a number, not {}", kind(other)),
            ));
        }
        None => return Err(Invalid::resource(format!("{path}.value"), "is required")),
    }
    .ok_or_else(|| Invalid::resource(format!("{path}.value"), "is out of range"))?;
    match q
        .get("system")
        .map(|s| string(s, &format!("{path}.system"), 200))
    {
        Some(Ok(s)) if s == UCUM => {}
        Some(Err(e)) => return Err(e),
        _ => {
            return Err(Invalid::resource(
                format!("{path}.system"),
                format!("must be {UCUM} (UCUM)"),
            ));
        }
    }
    let code = match q.get("code") {
        Some(c) => string(c, &format!("{path}.code"), 50)?,
        None => {
            return Err(Invalid::resource(
                format!("{path}.code"),
                "is required (a UCUM code)",
            ));
        }
    };
    let Some(recorded) = vital.to_recorded(value, code) else {
        return Err(Invalid::resource(
            format!("{path}.code"),
            format!(
                "{} is measured in {} (UCUM), not {}",
                vital.display,
                vital.units(),
                crate::routes::shown(code)
            ),
        ));
    };
    if let Some(u) = q.get("unit") {
        string(u, &format!("{path}.unit"), 50)?;
    }
    if !(vital.min..=vital.max).contains(&recorded) {
        let given = if code == vital.unit {
            String::new()
        } else {
            format!(" ({value} {code})")
        };
        return Err(Invalid::resource(
            format!("{path}.value"),
            format!(
                "{} of {recorded} {}{given} is outside the plausible range {} to {} {}",
                vital.display, vital.unit, vital.min, vital.max, vital.unit
            ),
        ));
    }
    Ok(recorded)
}

/// The NHS number a `subject` reference names: `Patient/{nhsNumber}` or an NHS number identifier.
pub fn subject_nhs_number(v: &Value, path: &str) -> Result<NhsNumber, Invalid> {
    let r = object(v, path)?;
    only(
        r,
        path,
        &["reference", "identifier", "display", "type"],
        &["id", "extension"],
    )?;
    let from_reference = match r.get("reference") {
        Some(s) => {
            let s = string(s, &format!("{path}.reference"), 100)?;
            let id = s.strip_prefix("Patient/").ok_or_else(|| {
                Invalid::resource(
                    format!("{path}.reference"),
                    "must be Patient/{NHS number} (a relative reference to the patient)",
                )
            })?;
            Some(NhsNumber::parse(id).map_err(|e| {
                Invalid::resource(
                    format!("{path}.reference"),
                    format!("is not a valid NHS number: {e}"),
                )
            })?)
        }
        None => None,
    };
    let from_identifier = match r.get("identifier") {
        Some(i) => {
            let at = format!("{path}.identifier");
            let id = object(i, &at)?;
            only(
                id,
                &at,
                &["system", "value"],
                &["use", "type", "period", "assigner"],
            )?;
            let system = id
                .get("system")
                .map(|s| string(s, &format!("{at}.system"), 200));
            if !matches!(system, Some(Ok(s)) if s == NHS_NUMBER_SYSTEM) {
                return Err(Invalid::resource(
                    format!("{at}.system"),
                    format!("must be {NHS_NUMBER_SYSTEM}"),
                ));
            }
            let value = id
                .get("value")
                .ok_or_else(|| Invalid::resource(format!("{at}.value"), "is required"))?;
            let value = string(value, &format!("{at}.value"), 20)?;
            Some(NhsNumber::parse(value).map_err(|e| {
                Invalid::resource(
                    format!("{at}.value"),
                    format!("is not a valid NHS number: {e}"),
                )
            })?)
        }
        None => None,
    };
    if let Some(t) = r.get("type")
        && t.as_str() != Some("Patient")
    {
        return Err(Invalid::resource(format!("{path}.type"), "must be Patient"));
    }
    if let Some(d) = r.get("display") {
        string(d, &format!("{path}.display"), 200)?;
    }
    match (from_reference, from_identifier) {
        (Some(a), Some(b)) if a != b => Err(Invalid::resource(
            path,
            "reference and identifier name different patients",
        )),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(Invalid::resource(
            path,
            "must name the patient by reference (Patient/{NHS number}) or NHS number identifier",
        )),
    }
}

/// When the observation was made: an instant with its time zone, not in the future.
/// A calendar date (`YYYY-MM-DD`) is taken as that date (`true`), at 00:00, and must not be
/// after today anywhere in the world.
fn effective(
    v: &Value,
    path: &str,
    now: time::OffsetDateTime,
) -> Result<(UtcDateTime, bool), Invalid> {
    let s = string(v, path, 40)?;
    if s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| {
                Invalid::resource(
                    path,
                    format!("'{}' is not a calendar date", crate::routes::shown(s)),
                )
            })?;
        let latest = (now.to_offset(time::UtcOffset::UTC) + time::Duration::hours(14)).date();
        if date > latest {
            return Err(Invalid::resource(
                path,
                format!("{s} is in the future (it is now {})", now.date()),
            ));
        }
        if date.year() < 1900 {
            return Err(Invalid::resource(path, "is before 1900"));
        }
        let at = UtcDateTime {
            year: date.year(),
            month: u8::from(date.month()),
            day: date.day(),
            hour: 0,
            minute: 0,
            second: 0,
        };
        return Ok((at, true));
    }
    let (year, month, day, hour, minute, second) = gp_fhir::date::parse_instant_utc(s).map_err(|_| {
        Invalid::resource(
            path,
            format!(
                "'{}' is neither a date (2026-07-14) nor a dateTime with a time and time zone (2026-07-14T08:32:05+01:00)",
                crate::routes::shown(s)
            ),
        )
    })?;
    let at = UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    };
    let now = now.to_offset(time::UtcOffset::UTC);
    let now_at = UtcDateTime {
        year: now.year(),
        month: u8::from(now.month()),
        day: now.day(),
        hour: now.hour(),
        minute: now.minute(),
        second: now.second(),
    };
    // Five minutes of clock skew between a device and the gateway is tolerated.
    let skew = (now + time::Duration::minutes(5)).to_offset(time::UtcOffset::UTC);
    let latest = UtcDateTime {
        year: skew.year(),
        month: u8::from(skew.month()),
        day: skew.day(),
        hour: skew.hour(),
        minute: skew.minute(),
        second: skew.second(),
    };
    if at > latest {
        return Err(Invalid::resource(
            path,
            format!("{s} is in the future (it is now {})", now_at.to_rfc3339()),
        ));
    }
    if year < 1900 {
        return Err(Invalid::resource(path, "is before 1900"));
    }
    Ok((at, false))
}

/// `device`: a display-only reference (GP systems hold the device's name, not a Device).
fn device(v: &Value, path: &str) -> Result<String, Invalid> {
    let r = object(v, path)?;
    only(
        r,
        path,
        &["display", "reference", "type"],
        &["id", "extension", "identifier"],
    )?;
    match r.get("display") {
        Some(d) => Ok(string(d, &format!("{path}.display"), 200)?.to_owned()),
        None => Err(Invalid::resource(
            format!("{path}.display"),
            "is required: GP systems record the device's name, not a reference to a Device",
        )),
    }
}

/// `performer`: one practice clinician, `Practitioner/{id}` as the gateway's reads name
/// them (the GP system must know them: checked once the patient's practice is known).
fn performer(v: &Value, path: &str) -> Result<String, Invalid> {
    let items = array(v, path)?;
    if items.len() > 1 {
        return Err(Invalid::resource(
            path,
            "names more than one performer; GP systems record the one clinician who took the reading",
        ));
    }
    let at = format!("{path}[0]");
    let r = object(&items[0], &at)?;
    only(
        r,
        &at,
        &["reference", "display", "type"],
        &["id", "extension", "identifier"],
    )?;
    let reference = r.get("reference").ok_or_else(|| {
        Invalid::resource(format!("{at}.reference"), "is required (Practitioner/{id})")
    })?;
    let reference = string(reference, &format!("{at}.reference"), 100)?;
    match reference.strip_prefix("Practitioner/") {
        Some(id) if !id.is_empty() && !id.contains('/') => Ok(id.to_owned()),
        _ => Err(Invalid::resource(
            format!("{at}.reference"),
            format!(
                "'{}' is not recorded as a performer: GP systems record a member of the practice's staff, Practitioner/{{id}} as this API names them",
                crate::routes::shown(reference)
            ),
        )),
    }
}

/// Checks an Observation body and turns it into what the GP system is asked to record.
pub fn observation(body: &[u8], now: time::OffsetDateTime) -> Result<IncomingObservation, Invalid> {
    let value = parse_json(body)?;
    let root = value
        .as_object()
        .ok_or_else(|| Invalid::request("the body must be a JSON object (a FHIR Observation)"))?;
    match root.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => {}
        Some(other) => {
            return Err(Invalid::resource(
                "Observation.resourceType",
                format!(
                    "is '{}'; POST /Observation takes an Observation",
                    crate::routes::shown(other)
                ),
            ));
        }
        None => {
            return Err(Invalid::resource(
                "Observation.resourceType",
                "is required (\"Observation\")",
            ));
        }
    }
    let p = "Observation";
    let mut known: Vec<&str> = OBSERVATION_ELEMENTS.to_vec();
    known.extend_from_slice(RESOURCE_ELEMENTS);
    only(
        root,
        p,
        &[
            "resourceType",
            "id",
            "meta",
            "identifier",
            "status",
            "category",
            "code",
            "subject",
            "effectiveDateTime",
            "valueQuantity",
            "component",
            "interpretation",
            "bodySite",
            "method",
            "device",
            "performer",
        ],
        &known,
    )?;
    if let Some(id) = root.get("id") {
        // A create's id is assigned by the GP system; one sent is ignored (FHIR create).
        string(id, "Observation.id", 64)?;
    }
    if let Some(meta) = root.get("meta") {
        let m = object(meta, "Observation.meta")?;
        only(
            m,
            "Observation.meta",
            &["profile"],
            &[
                "versionId",
                "lastUpdated",
                "source",
                "security",
                "tag",
                "id",
                "extension",
            ],
        )?;
        if let Some(profiles) = m.get("profile") {
            for (i, prof) in array(profiles, "Observation.meta.profile")?
                .iter()
                .enumerate()
            {
                string(prof, &format!("Observation.meta.profile[{i}]"), 200)?;
            }
        }
    }
    let identifier = match root.get("identifier") {
        None => None,
        Some(ids) => {
            let mut first = None;
            for (i, id) in array(ids, "Observation.identifier")?.iter().enumerate() {
                let at = format!("Observation.identifier[{i}]");
                let o = object(id, &at)?;
                only(
                    o,
                    &at,
                    &["system", "value", "use"],
                    &["type", "period", "assigner", "id", "extension"],
                )?;
                let system = o.get("system").ok_or_else(|| {
                    Invalid::resource(
                        format!("{at}.system"),
                        "is required (a URI naming your identifier space)",
                    )
                })?;
                let system = string(system, &format!("{at}.system"), 200)?;
                let value = o
                    .get("value")
                    .ok_or_else(|| Invalid::resource(format!("{at}.value"), "is required"))?;
                let value = string(value, &format!("{at}.value"), 200)?;
                if let Some(u) = o.get("use") {
                    string(u, &format!("{at}.use"), 20)?;
                }
                if first.is_none() {
                    first = Some((system.to_owned(), value.to_owned()));
                }
            }
            first
        }
    };
    match root
        .get("status")
        .map(|s| string(s, "Observation.status", 40))
    {
        Some(Ok("final")) => {}
        Some(Ok(other)) => {
            return Err(Invalid::resource(
                "Observation.status",
                format!(
                    "is '{}'; a reading written to a GP record must be final",
                    crate::routes::shown(other)
                ),
            ));
        }
        Some(Err(e)) => return Err(e),
        None => {
            return Err(Invalid::resource(
                "Observation.status",
                "is required (\"final\")",
            ));
        }
    }
    if let Some(categories) = root.get("category") {
        for (i, c) in array(categories, "Observation.category")?
            .iter()
            .enumerate()
        {
            let at = format!("Observation.category[{i}]");
            let cc = object(c, &at)?;
            only(cc, &at, CONCEPT_KEYS, &["id", "extension"])?;
            let codings = cc
                .get("coding")
                .map(|v| array(v, &format!("{at}.coding")))
                .transpose()?;
            for (j, coding) in codings.into_iter().flatten().enumerate() {
                let cat = format!("{at}.coding[{j}]");
                let o = object(coding, &cat)?;
                only(o, &cat, CODING_KEYS, CODING_KNOWN)?;
                let code = o.get("code").and_then(Value::as_str);
                if code != Some("vital-signs") {
                    return Err(Invalid::resource(
                        format!("{cat}.code"),
                        "only vital-signs observations are written to GP records",
                    ));
                }
            }
        }
    }
    let (code, original_codings) = concept(
        root.get("code")
            .ok_or_else(|| Invalid::resource("Observation.code", "is required"))?,
        "Observation.code",
    )?;
    let nhs_number = subject_nhs_number(
        root.get("subject")
            .ok_or_else(|| Invalid::resource("Observation.subject", "is required (the patient)"))?,
        "Observation.subject",
    )?;
    let (when, date_only) = effective(
        root.get("effectiveDateTime").ok_or_else(|| {
            Invalid::resource(
                "Observation.effectiveDateTime",
                "is required (when the reading was taken: a date, or a time with its time zone)",
            )
        })?,
        "Observation.effectiveDateTime",
        now,
    )?;
    let mut paths = DetailPaths::default();
    if date_only {
        paths.date_only = "Observation.effectiveDateTime".into();
    }
    let mut details = ReadingDetails {
        date_only,
        ..ReadingDetails::default()
    };
    let top_interpretation = match root.get("interpretation") {
        Some(v) => {
            paths.interpretation = "Observation.interpretation".into();
            Some(interpretation(v, "Observation.interpretation")?)
        }
        None => None,
    };
    if let Some(v) = root.get("bodySite") {
        paths.body_site = "Observation.bodySite".into();
        details.body_site = Some(one_code(v, "Observation.bodySite", &[SNOMED])?);
    }
    if let Some(v) = root.get("method") {
        paths.method = "Observation.method".into();
        details.method = Some(one_code(v, "Observation.method", &[SNOMED])?);
    }
    if let Some(v) = root.get("device") {
        paths.device = "Observation.device".into();
        details.device = Some(device(v, "Observation.device")?);
    }
    if let Some(v) = root.get("performer") {
        paths.performer = "Observation.performer".into();
        details.performer = Some(performer(v, "Observation.performer")?);
    }
    let (display, measurements) = if code == BLOOD_PRESSURE_PANEL {
        if root.contains_key("valueQuantity") {
            return Err(Invalid::resource(
                "Observation.valueQuantity",
                "a blood pressure carries its readings in component (systolic and diastolic), not valueQuantity",
            ));
        }
        let components = array(
            root.get("component").ok_or_else(|| {
                Invalid::resource(
                    "Observation.component",
                    "is required for a blood pressure (systolic 271649006 / LOINC 8480-6 and diastolic 271650006 / LOINC 8462-4)",
                )
            })?,
            "Observation.component",
        )?;
        let mut systolic = None;
        let mut diastolic = None;
        for (i, c) in components.iter().enumerate() {
            let at = format!("Observation.component[{i}]");
            let o = object(c, &at)?;
            only(
                o,
                &at,
                &["code", "valueQuantity", "interpretation"],
                &[
                    "id",
                    "extension",
                    "modifierExtension",
                    "dataAbsentReason",
                    "referenceRange",
                    "valueString",
                    "valueCodeableConcept",
                ],
            )?;
            let (ccode, _) = concept(
                o.get("code")
                    .ok_or_else(|| Invalid::resource(format!("{at}.code"), "is required"))?,
                &format!("{at}.code"),
            )?;
            let slot = match ccode.as_str() {
                "271649006" => &mut systolic,
                "271650006" => &mut diastolic,
                other => {
                    return Err(Invalid::resource(
                        format!("{at}.code"),
                        format!(
                            "SNOMED CT {} is not a blood pressure component (271649006 / LOINC 8480-6 systolic, 271650006 / LOINC 8462-4 diastolic)",
                            crate::routes::shown(other)
                        ),
                    ));
                }
            };
            if slot.is_some() {
                return Err(Invalid::resource(format!("{at}.code"), "appears twice"));
            }
            let Some(v) = vital(&ccode) else {
                return Err(Invalid::resource(format!("{at}.code"), "is not supported"));
            };
            let q = o
                .get("valueQuantity")
                .ok_or_else(|| Invalid::resource(format!("{at}.valueQuantity"), "is required"))?;
            let value = quantity(q, &format!("{at}.valueQuantity"), v)?;
            let interp = match o.get("interpretation") {
                Some(x) => {
                    if paths.interpretation.is_empty() {
                        paths.interpretation = format!("{at}.interpretation");
                    }
                    Some(interpretation(x, &format!("{at}.interpretation"))?)
                }
                None => None,
            };
            *slot = Some((v, value, interp));
        }
        let (Some((sv, s, si)), Some((dv, d, di))) = (systolic, diastolic) else {
            return Err(Invalid::resource(
                "Observation.component",
                "a blood pressure needs both systolic (271649006 / LOINC 8480-6) and diastolic (271650006 / LOINC 8462-4) components",
            ));
        };
        if s <= d {
            return Err(Invalid::resource(
                "Observation.component",
                format!("systolic {s} mm[Hg] must be above diastolic {d} mm[Hg]"),
            ));
        }
        details.interpretation = top_interpretation;
        let m = |v: &Vital, value, interpretation| Measurement {
            snomed: v.snomed.into(),
            display: v.display.into(),
            value,
            unit: v.unit.into(),
            interpretation,
        };
        (
            "Blood pressure".to_owned(),
            vec![m(sv, s, si), m(dv, d, di)],
        )
    } else {
        let Some(v) = vital(&code) else {
            return Err(Invalid::resource(
                "Observation.code",
                format!(
                    "SNOMED CT {} is not a reading suppliers may write to GP records; supported: {}",
                    crate::routes::shown(&code),
                    supported_codes()
                ),
            ));
        };
        if root.contains_key("component") {
            return Err(Invalid::resource(
                "Observation.component",
                format!(
                    "{} is a single reading: send valueQuantity, not components",
                    v.display
                ),
            ));
        }
        let q = root.get("valueQuantity").ok_or_else(|| {
            Invalid::resource(
                "Observation.valueQuantity",
                format!("is required ({} in {})", v.display, v.unit),
            )
        })?;
        let value = quantity(q, "Observation.valueQuantity", v)?;
        (
            v.display.to_owned(),
            vec![Measurement {
                snomed: v.snomed.into(),
                display: v.display.into(),
                value,
                unit: v.unit.into(),
                // A single reading's interpretation is its measurement's.
                interpretation: top_interpretation,
            }],
        )
    };
    details.original_codings = original_codings;
    Ok(IncomingObservation {
        nhs_number,
        identifier,
        observation: NewObservation {
            key: String::new(),
            // Set with the key: the identifier may come from If-None-Exist instead.
            identifier: None,
            snomed: code,
            display,
            effective: when,
            measurements,
            details,
        },
        detail_paths: paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-11-23 12:00 UTC)
    }

    fn bp() -> Value {
        serde_json::json!({
            "resourceType": "Observation",
            "identifier": [{"system": "https://example.com/readings", "value": "r-1"}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": SNOMED, "code": "75367002", "display": "Blood pressure"}]},
            "subject": {"reference": "Patient/9000000009"},
            "effectiveDateTime": "2026-11-20T08:30:00+00:00",
            "component": [
                {"code": {"coding": [{"system": SNOMED, "code": "271650006"}]},
                 "valueQuantity": {"value": 82, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
                 "valueQuantity": {"value": 131, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
            ]
        })
    }

    fn check(v: &Value) -> Result<IncomingObservation, Invalid> {
        observation(&serde_json::to_vec(v).unwrap(), now())
    }

    #[test]
    fn a_blood_pressure_is_normalised_systolic_first() {
        let ok = check(&bp()).unwrap();
        assert_eq!(ok.nhs_number.to_string(), "9000000009");
        assert_eq!(
            ok.identifier,
            Some(("https://example.com/readings".into(), "r-1".into()))
        );
        let o = ok.observation;
        assert_eq!(o.snomed, "75367002");
        assert_eq!(o.effective.to_rfc3339(), "2026-11-20T08:30:00Z");
        let values: Vec<(&str, f64)> = o
            .measurements
            .iter()
            .map(|m| (m.snomed.as_str(), m.value))
            .collect();
        assert_eq!(values, [("271649006", 131.0), ("271650006", 82.0)]);
    }

    #[test]
    fn each_bad_element_is_named() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| v["resourceType"] = "Patient".into()),
                "Observation.resourceType",
            ),
            (
                Box::new(|v| v["colour"] = "blue".into()),
                "Observation.colour",
            ),
            (
                Box::new(|v| v["note"] = serde_json::json!([{"text": "x"}])),
                "Observation.note",
            ),
            (
                Box::new(|v| v["status"] = "preliminary".into()),
                "Observation.status",
            ),
            (
                Box::new(|v| v["subject"]["reference"] = "Patient/9000000008".into()),
                "Observation.subject.reference",
            ),
            (
                Box::new(|v| v["effectiveDateTime"] = "2026-11-31".into()),
                "Observation.effectiveDateTime",
            ),
            (
                Box::new(|v| v["effectiveDateTime"] = "2026-02-30T10:00:00Z".into()),
                "Observation.effectiveDateTime",
            ),
            (
                Box::new(|v| v["effectiveDateTime"] = "2027-01-01T10:00:00Z".into()),
                "Observation.effectiveDateTime",
            ),
            (
                Box::new(|v| v["component"][0]["valueQuantity"]["code"] = "cm".into()),
                "Observation.component[0].valueQuantity.code",
            ),
            (
                Box::new(|v| v["component"][1]["valueQuantity"]["value"] = 900.into()),
                "Observation.component[1].valueQuantity.value",
            ),
            (
                Box::new(|v| v["component"][1]["valueQuantity"]["value"] = "131".into()),
                "Observation.component[1].valueQuantity.value",
            ),
            (
                Box::new(|v| v["code"]["coding"][0]["code"] = "1234567".into()),
                "Observation.code",
            ),
            (
                Box::new(|v| v["code"]["coding"][0]["system"] = "http://loinc.org".into()),
                "Observation.code.coding",
            ),
            (
                Box::new(|v| v["identifier"][0]["value"] = "".into()),
                "Observation.identifier[0].value",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("effectiveDateTime");
                }),
                "Observation.effectiveDateTime",
            ),
            (
                Box::new(|v| v["component"] = serde_json::json!([])),
                "Observation.component",
            ),
        ];
        for (mutate, path) in cases {
            let mut v = bp();
            mutate(&mut v);
            let err = check(&v).unwrap_err();
            assert_eq!(err.path, path, "{}", err.message);
            assert_eq!(err.status, 422);
            assert!(err.message.starts_with(path), "{}", err.message);
        }
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [&b""[..], b"{", b"[1]", b"\"x\""] {
            assert_eq!(observation(body, now()).unwrap_err().status, 400);
        }
    }

    #[test]
    fn a_single_reading_takes_value_quantity() {
        let v = serde_json::json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": SNOMED, "code": "27113001"}]},
            "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9690937278"}},
            "effectiveDateTime": "2026-07-14T08:32:05+01:00",
            "valueQuantity": {"value": 72.4, "unit": "kg", "system": UCUM, "code": "kg"}
        });
        let ok = check(&v).unwrap();
        assert_eq!(ok.identifier, None);
        assert_eq!(
            ok.observation.effective.to_rfc3339(),
            "2026-07-14T07:32:05Z"
        );
        assert_eq!(ok.observation.measurements[0].value, 72.4);
    }

    fn hl7(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/hl7-r4-vital-signs/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_official_hl7_vital_signs_examples_are_accepted_as_gp_systems_record_them() {
        type Case = (&'static str, &'static str, &'static [(&'static str, f64)]);
        let cases: &[Case] = &[
            (
                "Observation-heart-rate",
                "364075005",
                &[("364075005", 44.0)],
            ),
            (
                "Observation-body-height",
                "50373000",
                &[("50373000", 169.9)],
            ),
            ("Observation-bmi", "60621009", &[("60621009", 16.2)]),
            ("Observation-example", "27113001", &[("27113001", 83.91)]),
            (
                "Observation-blood-pressure",
                "75367002",
                &[("271649006", 107.0), ("271650006", 60.0)],
            ),
            (
                "Observation-respiratory-rate",
                "86290005",
                &[("86290005", 26.0)],
            ),
            (
                "Observation-body-temperature",
                "386725007",
                &[("386725007", 36.5)],
            ),
            (
                "Observation-head-circumference",
                "363812007",
                &[("363812007", 51.2)],
            ),
        ];
        for (name, code, values) in cases {
            let ok = check(&hl7(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let o = &ok.observation;
            assert_eq!(o.snomed, *code, "{name}");
            let got: Vec<(&str, f64)> = o
                .measurements
                .iter()
                .map(|m| (m.snomed.as_str(), m.value))
                .collect();
            assert_eq!(got, *values, "{name}");
            assert_eq!(
                ok.identifier,
                Some(("https://example.org/hl7-examples".into(), (*name).into()))
            );
        }
        // Date-only times stay dates.
        let hr = check(&hl7("Observation-heart-rate")).unwrap();
        assert!(hr.observation.details.date_only);
        assert_eq!(
            hr.observation.effective.to_rfc3339(),
            "1999-07-02T00:00:00Z"
        );
        assert_eq!(hr.detail_paths.date_only, "Observation.effectiveDateTime");
        // LOINC kept as the supplier's coding, in order.
        let hr_codes: Vec<&str> = hr
            .observation
            .details
            .original_codings
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(hr_codes, ["8867-4"]);
        let weight = check(&hl7("Observation-example")).unwrap();
        let codes: Vec<&str> = weight
            .observation
            .details
            .original_codings
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(codes, ["29463-7", "3141-9", "body-weight"]);
    }

    #[test]
    fn the_hl7_blood_pressure_keeps_its_interpretations_body_site_and_performer() {
        let bp = check(&hl7("Observation-blood-pressure")).unwrap();
        let d = &bp.observation.details;
        assert_eq!(
            d.interpretation.as_ref().map(|c| c.code.as_str()),
            Some("L")
        );
        assert_eq!(
            d.body_site.as_ref().map(|c| c.code.as_str()),
            Some("368209003")
        );
        assert_eq!(d.performer.as_deref(), Some("example"));
        let per: Vec<Option<&str>> = bp
            .observation
            .measurements
            .iter()
            .map(|m| m.interpretation.as_ref().map(|c| c.code.as_str()))
            .collect();
        assert_eq!(per, [Some("N"), Some("L")]);
        assert_eq!(bp.detail_paths.performer, "Observation.performer");
        assert_eq!(bp.detail_paths.body_site, "Observation.bodySite");
    }

    #[test]
    fn what_the_gp_system_cannot_hold_is_refused_by_name_and_codings_it_cannot_hold_are_not_sent() {
        let support = ReadingSupport {
            date_only: true,
            interpretation: true,
            body_site: false,
            ..ReadingSupport::default()
        };
        let mut bp = check(&hl7("Observation-blood-pressure")).unwrap();
        let e = bp.fit_to(support, "Vision").unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(e.path, "Observation.bodySite");
        assert!(e.message.contains("Vision"), "{e}");
        let mut hr = check(&hl7("Observation-heart-rate")).unwrap();
        hr.fit_to(support, "Vision").unwrap();
        assert!(hr.observation.details.original_codings.is_empty());
        let mut hr = check(&hl7("Observation-heart-rate")).unwrap();
        let e = hr
            .fit_to(ReadingSupport::default(), "EMIS Web")
            .unwrap_err();
        assert_eq!(e.path, "Observation.effectiveDateTime");
        let mut hr = check(&hl7("Observation-heart-rate")).unwrap();
        hr.fit_to(
            ReadingSupport {
                date_only: true,
                original_codings: true,
                ..ReadingSupport::default()
            },
            "Microtest Evolution",
        )
        .unwrap();
        assert_eq!(hr.observation.details.original_codings.len(), 1);
    }

    #[test]
    fn elements_no_gp_system_records_are_refused_by_name() {
        let e = check(&hl7("Observation-satO2")).unwrap_err();
        assert_eq!(e.path, "Observation.partOf");
        let mut v = hl7("Observation-heart-rate");
        v["valueQuantity"]["code"] = "kg".into();
        let e = check(&v).unwrap_err();
        assert_eq!(e.path, "Observation.valueQuantity.code");
        assert!(e.message.contains("/min"), "{e}");
        let mut v = hl7("Observation-heart-rate");
        v["valueQuantity"]["value"] = 400.into();
        let e = check(&v).unwrap_err();
        assert_eq!(e.path, "Observation.valueQuantity.value");
        let mut v = hl7("Observation-body-temperature");
        v["valueQuantity"] =
            serde_json::json!({"value": 120, "unit": "F", "system": UCUM, "code": "[degF]"});
        let e = check(&v).unwrap_err();
        assert!(e.message.contains("48.9 Cel (120 [degF])"), "{e}");
        let mut v = hl7("Observation-example");
        v["code"]["coding"][0]["code"] = "8302-2".into();
        let e = check(&v).unwrap_err();
        assert_eq!(e.path, "Observation.code.coding[0]");
        let mut v = hl7("Observation-heart-rate");
        v["code"]["coding"][0]["system"] = "http://example.org/codes".into();
        let e = check(&v).unwrap_err();
        assert_eq!(e.path, "Observation.code.coding");
        assert!(e.message.contains("SNOMED CT or LOINC"), "{e}");
        let mut v = hl7("Observation-heart-rate");
        v["device"] = serde_json::json!({"reference": "Device/1"});
        assert_eq!(check(&v).unwrap_err().path, "Observation.device.display");
        let mut v = hl7("Observation-heart-rate");
        v["performer"] = serde_json::json!([{"reference": "Patient/9000000009"}]);
        assert_eq!(
            check(&v).unwrap_err().path,
            "Observation.performer[0].reference"
        );
        let mut v = hl7("Observation-heart-rate");
        v["effectiveDateTime"] = "2026-11-25".into();
        assert_eq!(check(&v).unwrap_err().path, "Observation.effectiveDateTime");
        let mut v = hl7("Observation-heart-rate");
        v["interpretation"] =
            serde_json::json!([{"coding": [{"system": "http://example.org", "code": "H"}]}]);
        assert_eq!(
            check(&v).unwrap_err().path,
            "Observation.interpretation[0].coding[0].system"
        );
    }

    #[test]
    fn new_remote_monitoring_readings_are_accepted_in_loinc_or_snomed() {
        let reading = |coding: Value, value: f64, unit: &str| {
            let mut v = hl7("Observation-heart-rate");
            v["code"] = serde_json::json!({"coding": [coding]});
            v["valueQuantity"] = serde_json::json!({"value": value, "system": UCUM, "code": unit});
            check(&v)
        };
        let g = reading(
            serde_json::json!({"system": "http://loinc.org", "code": "41653-7"}),
            99.0,
            "mg/dL",
        )
        .unwrap();
        assert_eq!(
            (
                g.observation.snomed.as_str(),
                g.observation.measurements[0].value
            ),
            ("997671000000106", 5.5)
        );
        let p = reading(
            serde_json::json!({"system": "http://loinc.org", "code": "19935-6"}),
            420.0,
            "L/min",
        )
        .unwrap();
        assert_eq!(p.observation.snomed, "313193002");
        let w = reading(
            serde_json::json!({"system": SNOMED, "code": "276361009"}),
            34.0,
            "[in_i]",
        )
        .unwrap();
        assert_eq!(w.observation.measurements[0].value, 86.4);
        let s = reading(
            serde_json::json!({"system": "http://loinc.org", "code": "59408-5"}),
            97.0,
            "%",
        )
        .unwrap();
        assert_eq!(s.observation.snomed, "431314004");
    }
}
