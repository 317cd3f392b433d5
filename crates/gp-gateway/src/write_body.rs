//! Resources suppliers write, checked before anything reaches a GP system.
//!
//! Each check names the element at fault as a FHIRPath (`Observation.component[1].valueQuantity.code`)
//! in the OperationOutcome's `expression`. What a GP system cannot hold is refused, never
//! silently dropped: a supplier must know that what it captured is what was recorded.

use gp_adapter::write::BLOOD_PRESSURE_PANEL;
use gp_adapter::{Measurement, NewObservation, UtcDateTime};
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use gp_fhir::model::{SNOMED, UCUM};
use gp_fhir::{FhirError, IssueType, NhsNumber, SpineCode};
use serde_json::{Map, Value};

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
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let shown = crate::routes::shown(key);
        let at = format!("{path}.{shown}");
        let supported = allowed.join(", ");
        return Err(if known.contains(&key.as_str()) || key.starts_with('_') {
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
const RESOURCE_ELEMENTS: &[&str] = &[
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

/// A vital sign suppliers may write: SNOMED CT concept, term, UCUM unit and the
/// plausible range a reading must fall in.
struct Vital {
    snomed: &'static str,
    display: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
}

const VITALS: &[Vital] = &[
    Vital {
        snomed: "271649006",
        display: "Systolic blood pressure",
        unit: "mm[Hg]",
        min: 40.0,
        max: 300.0,
    },
    Vital {
        snomed: "271650006",
        display: "Diastolic blood pressure",
        unit: "mm[Hg]",
        min: 20.0,
        max: 200.0,
    },
    Vital {
        snomed: "27113001",
        display: "Body weight",
        unit: "kg",
        min: 0.2,
        max: 500.0,
    },
    Vital {
        snomed: "50373000",
        display: "Body height",
        unit: "cm",
        min: 20.0,
        max: 280.0,
    },
    Vital {
        snomed: "78564009",
        display: "Pulse rate",
        unit: "/min",
        min: 20.0,
        max: 300.0,
    },
    Vital {
        snomed: "60621009",
        display: "Body mass index",
        unit: "kg/m2",
        min: 5.0,
        max: 150.0,
    },
];

fn supported_codes() -> String {
    let mut out =
        format!("{BLOOD_PRESSURE_PANEL} Blood pressure (with systolic and diastolic components)");
    for v in VITALS {
        out.push_str(&format!(", {} {} ({})", v.snomed, v.display, v.unit));
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
}

const CODING_KEYS: &[&str] = &["system", "code", "display", "version", "userSelected"];
const CODING_KNOWN: &[&str] = &["id", "extension"];
const CONCEPT_KEYS: &[&str] = &["coding", "text"];

/// The SNOMED CT code of a CodeableConcept (other codings may sit beside it).
fn snomed_code(v: &Value, path: &str) -> Result<String, Invalid> {
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
    let mut found = None;
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
        for key in ["display", "version"] {
            if let Some(d) = coding.get(key) {
                string(d, &format!("{at}.{key}"), 500)?;
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
        if system == SNOMED && found.is_none() {
            found = Some(code.to_owned());
        }
    }
    found.ok_or_else(|| {
        Invalid::resource(
            format!("{path}.coding"),
            format!("needs a SNOMED CT coding (system {SNOMED})"),
        )
    })
}

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
    if code != vital.unit {
        return Err(Invalid::resource(
            format!("{path}.code"),
            format!(
                "{} is recorded in {}, not {code}",
                vital.display, vital.unit
            ),
        ));
    }
    if let Some(u) = q.get("unit") {
        string(u, &format!("{path}.unit"), 50)?;
    }
    if !(vital.min..=vital.max).contains(&value) {
        return Err(Invalid::resource(
            format!("{path}.value"),
            format!(
                "{} of {value} {} is outside the plausible range {} to {}",
                vital.display, vital.unit, vital.min, vital.max
            ),
        ));
    }
    Ok(value)
}

fn vital(code: &str) -> Option<&'static Vital> {
    VITALS.iter().find(|v| v.snomed == code)
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
fn effective(v: &Value, path: &str, now: time::OffsetDateTime) -> Result<UtcDateTime, Invalid> {
    let s = string(v, path, 40)?;
    let (year, month, day, hour, minute, second) = gp_fhir::date::parse_instant_utc(s).map_err(|_| {
        Invalid::resource(
            path,
            format!(
                "'{}' is not a dateTime with a time and time zone (e.g. 2026-07-14T08:32:05+01:00)",
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
    Ok(at)
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
    let code = snomed_code(
        root.get("code")
            .ok_or_else(|| Invalid::resource("Observation.code", "is required"))?,
        "Observation.code",
    )?;
    let nhs_number = subject_nhs_number(
        root.get("subject")
            .ok_or_else(|| Invalid::resource("Observation.subject", "is required (the patient)"))?,
        "Observation.subject",
    )?;
    let when = effective(
        root.get("effectiveDateTime").ok_or_else(|| {
            Invalid::resource(
                "Observation.effectiveDateTime",
                "is required (when the reading was taken, with its time zone)",
            )
        })?,
        "Observation.effectiveDateTime",
        now,
    )?;
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
                    "is required for a blood pressure (systolic 271649006 and diastolic 271650006)",
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
                &["code", "valueQuantity"],
                &[
                    "id",
                    "extension",
                    "modifierExtension",
                    "dataAbsentReason",
                    "interpretation",
                    "referenceRange",
                    "valueString",
                    "valueCodeableConcept",
                ],
            )?;
            let ccode = snomed_code(
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
                            "SNOMED CT {} is not a blood pressure component (271649006 systolic, 271650006 diastolic)",
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
            *slot = Some((v, quantity(q, &format!("{at}.valueQuantity"), v)?));
        }
        let (Some((sv, s)), Some((dv, d))) = (systolic, diastolic) else {
            return Err(Invalid::resource(
                "Observation.component",
                "a blood pressure needs both systolic (271649006) and diastolic (271650006) components",
            ));
        };
        if s <= d {
            return Err(Invalid::resource(
                "Observation.component",
                format!("systolic {s} mm[Hg] must be above diastolic {d} mm[Hg]"),
            ));
        }
        let m = |v: &Vital, value| Measurement {
            snomed: v.snomed.into(),
            display: v.display.into(),
            value,
            unit: v.unit.into(),
            interpretation: None,
        };
        ("Blood pressure".to_owned(), vec![m(sv, s), m(dv, d)])
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
                interpretation: None,
            }],
        )
    };
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
            details: Default::default(),
        },
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
                Box::new(|v| v["effectiveDateTime"] = "2026-11-20".into()),
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
                Box::new(|v| v["component"][0]["valueQuantity"]["code"] = "kPa".into()),
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
}
