//! Search-parameter parsing: query strings into typed, validated searches.
//!
//! Unknown parameters are refused rather than silently ignored: a supplier who
//! misspells `date` must not receive a whole record believing it was filtered.

use crate::date::{DateRange, PartialDate, day_after, day_before};
use crate::ids::{NHS_NUMBER_SYSTEM, NhsNumber, NhsNumberError};
use crate::include::Includes;
use crate::model::{CodeableConcept, Coding, Identifier, Resource};
use crate::outcome::{FhirError, IssueType, SpineCode};
use crate::subset::Subset;
use crate::text::shown;

/// Longest query string value the gateway will look at.
const MAX_VALUE_LEN: usize = 512;

/// A bad search request; each variant names the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("query string is not valid percent-encoded UTF-8")]
    Encoding,
    #[error("unknown search parameter '{0}' (supported: {1})")]
    UnknownParameter(String, String),
    #[error("search parameter '{0}' is required")]
    Missing(&'static str),
    #[error("search parameter '{0}' may appear only once")]
    Repeated(String),
    #[error("search parameter '{name}' has an invalid value: {why}")]
    Invalid { name: String, why: String },
    #[error("_count must be a whole number (0 asks for the count only), not '{value}'")]
    Count { value: String },
    #[error("{0}")]
    NhsNumber(#[from] NhsNumberError),
    /// A value or modifier FHIR defines that the gateway cannot serve: refused rather
    /// than ignored, so no supplier takes an unfiltered answer for a filtered one.
    #[error("search parameter '{name}' = '{value}' is not supported: {why}")]
    Unsupported {
        name: String,
        value: String,
        why: String,
    },
    /// A parameter the searched type has no element for.
    #[error("search parameter '{name}' is not supported on {resource_type}: {why}")]
    NotOnType {
        name: String,
        resource_type: String,
        why: &'static str,
    },
}

impl From<crate::include::Refused> for SearchError {
    fn from(r: crate::include::Refused) -> Self {
        Self::Unsupported {
            name: r.name,
            value: r.value,
            why: r.why,
        }
    }
}

impl FhirError for SearchError {
    fn status(&self) -> u16 {
        400
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NhsNumber(_) => SpineCode::InvalidResourceId,
            Self::Missing(_) => SpineCode::MissingValue,
            Self::UnknownParameter(..) | Self::Unsupported { .. } | Self::NotOnType { .. } => {
                SpineCode::InvalidParameter
            }
            _ => SpineCode::InvalidSearchData,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::Missing(_) => IssueType::Required,
            Self::UnknownParameter(..) | Self::Unsupported { .. } | Self::NotOnType { .. } => {
                IssueType::NotSupported
            }
            _ => IssueType::Invalid,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn percent_decode(s: &str) -> Result<String, SearchError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .ok_or(SearchError::Encoding)?;
                let lo = bytes
                    .get(i + 2)
                    .copied()
                    .and_then(hex)
                    .ok_or(SearchError::Encoding)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SearchError::Encoding)
}

/// Encodes a value for use in a query string (RFC 3986 unreserved characters pass).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pairs` as a query string (`a=1&b=2`), each name and value percent-encoded: what a
/// `self` or `next` link repeats of a search.
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let encoded: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    encoded.join("&")
}

/// Splits and decodes a query string into ordered `(name, value)` pairs.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, SearchError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if v.len() > MAX_VALUE_LEN {
            return Err(SearchError::Invalid {
                name: k,
                why: format!("longer than {MAX_VALUE_LEN} characters"),
            });
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// Paging and size limits applied to searches.
#[derive(Debug, Clone, Copy)]
pub struct PagingLimits {
    pub default_count: u32,
    pub max_count: u32,
}

impl Default for PagingLimits {
    fn default() -> Self {
        Self {
            default_count: 50,
            max_count: 250,
        }
    }
}

/// Which page of a search is served: `_count`, `_offset`, `_summary=count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Entries per page; 0 asks for the total only (`_count=0`, `_summary=count`).
    pub count: u32,
    pub offset: u32,
}

/// How each entry of a search is rendered: `_summary`, `_elements`, `_pretty`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub subset: Subset,
    /// `_pretty=true`: the answer is indented.
    pub pretty: bool,
}

/// `_sort`: the order of a clinical search's entries (the GP system's order without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// `date`: oldest first.
    Date,
    /// `-date`: most recent first.
    DateDescending,
}

/// One search parameter a search accepts, as the CapabilityStatement and the OpenAPI
/// document list it.
#[derive(Debug)]
pub struct ParamDef {
    pub name: &'static str,
    /// The FHIR search parameter type (`token`, `reference`, `date`, `number`, `string`).
    pub kind: &'static str,
    pub documentation: &'static str,
    /// A value the gateway accepts (`9000000009` stands for the patient).
    pub example: &'static str,
}

const fn def(
    name: &'static str,
    kind: &'static str,
    documentation: &'static str,
    example: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        documentation,
        example,
    }
}

/// Why the GP systems cannot serve `_lastUpdated`.
const NO_LAST_UPDATED: &str = "the GP systems do not say when a record entry was last updated (entries carry no meta.lastUpdated), so nothing can be filtered or sorted by it; use date";

/// The parameters of a clinical search, each type taking those [`not_on_type`] allows.
const CLINICAL_PARAMS: &[ParamDef] = &[
    def(
        "patient",
        "reference",
        "Patient/{NHS number}, the NHS number, this gateway's {base}/Patient/{NHS number}, or https://fhir.nhs.uk/Id/nhs-number|{NHS number} (patient:identifier)",
        "Patient/9000000009",
    ),
    def(
        "subject",
        "reference",
        "the patient, as for patient (either one, not both)",
        "Patient/9000000009",
    ),
    def(
        "date",
        "date",
        "prefixes eq, gt, lt, ge, le, sa, eb; repeatable",
        "ge2020-01-01",
    ),
    def(
        "code",
        "token",
        "system|code, code or system| (comma: any of; repeated: all of; :not); the SNOMED CT coding or the GP system's original one (Read v2, CTV3, local)",
        "http://snomed.info/sct|27113001",
    ),
    def(
        "category",
        "token",
        "system|code, code or system| (comma: any of; :not)",
        "vital-signs",
    ),
    def(
        "status",
        "token",
        "the entry's status code (comma: any of; :not)",
        "final",
    ),
    def(
        "clinical-status",
        "token",
        "system|code or code of clinicalStatus (comma: any of; :not)",
        "active",
    ),
    def(
        "identifier",
        "token",
        "system|value, value or system| against the entry's identifiers (the GP system's own ids, a supplier's on what it recorded)",
        "https://example.com/my-app/readings|reading-0001",
    ),
    def(
        "_id",
        "token",
        "comma-separated entry ids (a create's Location uses it)",
        "a1,b2",
    ),
    def(
        "_sort",
        "string",
        "date (oldest first) or -date (most recent first); without it, the GP system's order",
        "-date",
    ),
];

/// The parameters that shape a search's answer rather than select its entries.
const RESULT_DEFS: &[ParamDef] = &[
    def(
        "_count",
        "number",
        "page size; more than the maximum (250) is served at the maximum, 0 the total only",
        "10",
    ),
    def("_offset", "number", "paging: follow Bundle.link next", "10"),
    def(
        "_summary",
        "token",
        "true (summary elements), data (no narrative), count (the total only) or false",
        "true",
    ),
    def(
        "_elements",
        "string",
        "comma-separated top-level elements to return (id, meta and mandatory ones always are; marked SUBSETTED)",
        "id,identifier",
    ),
    def(
        "_total",
        "token",
        "none, estimate or accurate: the total is always given, exactly",
        "accurate",
    ),
    def("_pretty", "token", "true: indented JSON", "true"),
];

/// Said of every `_include` / `_revinclude` (their values: [`crate::include::INCLUDES`]).
const INCLUDE_DOC: &str = "Type:param or Type:param:TargetType, one reference level, repeatable (the CapabilityStatement's searchInclude / searchRevInclude list each); needs the read scope of what it brings in (403 naming it otherwise)";

/// `_include` and `_revinclude`, on the types they apply to, each with a value the
/// gateway serves.
const INCLUDE_PARAMS: &[(&str, ParamDef)] = &[
    (
        "Patient",
        def(
            "_include",
            "special",
            INCLUDE_DOC,
            "Patient:general-practitioner",
        ),
    ),
    (
        "Patient",
        def("_revinclude", "special", INCLUDE_DOC, "Observation:patient"),
    ),
    (
        "AllergyIntolerance",
        def(
            "_include",
            "special",
            INCLUDE_DOC,
            "AllergyIntolerance:recorder",
        ),
    ),
    (
        "MedicationStatement",
        def(
            "_include",
            "special",
            INCLUDE_DOC,
            "MedicationStatement:context",
        ),
    ),
    (
        "Condition",
        def("_include", "special", INCLUDE_DOC, "Condition:encounter"),
    ),
    (
        "Observation",
        def("_include", "special", INCLUDE_DOC, "Observation:encounter"),
    ),
    (
        "Immunization",
        def("_include", "special", INCLUDE_DOC, "Immunization:performer"),
    ),
    (
        "Encounter",
        def("_include", "special", INCLUDE_DOC, "Encounter:participant"),
    ),
    (
        "Encounter",
        def(
            "_revinclude",
            "special",
            INCLUDE_DOC,
            "Observation:encounter",
        ),
    ),
];

const PATIENT_PARAMS: &[ParamDef] = &[def(
    "identifier",
    "token",
    "https://fhir.nhs.uk/Id/nhs-number|{NHS number}",
    "https://fhir.nhs.uk/Id/nhs-number|9000000009",
)];

/// Why `resource_type` cannot be searched by `param` (`None`: it can).
fn not_on_type(resource_type: &str, param: &str) -> Option<&'static str> {
    match (param, resource_type) {
        ("category", "AllergyIntolerance" | "Condition" | "Observation")
        | ("status", "MedicationStatement" | "Observation" | "Immunization" | "Encounter")
        | ("clinical-status", "AllergyIntolerance" | "Condition") => None,
        ("category", "MedicationStatement") => {
            Some("the GP systems record no category on medication statements, so none would match")
        }
        ("category", _) => Some("R4 gives this type no category"),
        ("status", _) => Some("R4 gives this type no status; search clinical-status"),
        ("clinical-status", _) => Some("R4 gives this type no clinicalStatus; search status"),
        _ => None,
    }
}

/// The clinical types a patient's record is searched by.
pub(crate) const CLINICAL_TYPES: [&str; 6] = [
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Observation",
    "Immunization",
    "Encounter",
];

/// The search parameters `resource_type` takes: `Patient`, or a clinical type (none for
/// any other).
pub fn search_params(resource_type: &str) -> Vec<&'static ParamDef> {
    let own: Vec<&'static ParamDef> = if resource_type == "Patient" {
        PATIENT_PARAMS.iter().collect()
    } else if !CLINICAL_TYPES.contains(&resource_type) {
        return Vec::new();
    } else {
        CLINICAL_PARAMS
            .iter()
            .filter(|p| not_on_type(resource_type, p.name).is_none())
            .collect()
    };
    let includes = INCLUDE_PARAMS
        .iter()
        .filter(|(t, _)| *t == resource_type)
        .map(|(_, p)| p);
    own.into_iter().chain(includes).chain(RESULT_DEFS).collect()
}

/// The names [`search_params`] lists, for the message refusing an unknown one.
fn supported(resource_type: &str) -> String {
    let names: Vec<&str> = search_params(resource_type)
        .iter()
        .map(|p| p.name)
        .collect();
    format!("{}, _format", names.join(", "))
}

/// Parameters any search takes whose value shapes the answer (parsed by
/// [`parse_result`]); `_sort` is the clinical searches' own.
const RESULT_PARAMS: [&str; 7] = [
    "_count",
    "_offset",
    "_format",
    "_summary",
    "_elements",
    "_total",
    "_pretty",
];

/// Parameters a page link sets itself; every other parameter is carried through.
const PAGING_PARAMS: [&str; 2] = ["_count", "_offset"];

fn unsupported(name: &str, value: &str, why: impl Into<String>) -> SearchError {
    SearchError::Unsupported {
        name: sanitize(name),
        value: shown(value),
        why: why.into(),
    }
}

/// Fails when `name` appears twice in `seen`'s keeping.
fn once(seen: &mut Vec<&'static str>, name: &'static str) -> Result<(), SearchError> {
    if seen.contains(&name) {
        return Err(SearchError::Repeated(name.into()));
    }
    seen.push(name);
    Ok(())
}

/// Reads the result parameters of a search of `resource_type`.
fn parse_result(
    resource_type: &str,
    pairs: &[(String, String)],
    limits: PagingLimits,
) -> Result<(Paging, Shape), SearchError> {
    let mut paging = Paging {
        count: limits.default_count,
        offset: 0,
    };
    let mut shape = Shape::default();
    let mut seen = Vec::new();
    let mut count_only = false;
    let mut elements = None;
    for (k, v) in pairs {
        match k.as_str() {
            "_count" => {
                once(&mut seen, "_count")?;
                // FHIR lets a server return fewer than asked: a larger page is served
                // at the maximum, as client libraries' default page sizes expect.
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SearchError::Count {
                        value: v.chars().take(20).collect(),
                    });
                }
                paging.count = v.parse::<u32>().unwrap_or(u32::MAX).min(limits.max_count);
            }
            "_offset" => {
                once(&mut seen, "_offset")?;
                paging.offset = v.parse::<u32>().map_err(|_| SearchError::Invalid {
                    name: k.clone(),
                    why: "expected a non-negative integer".into(),
                })?;
            }
            "_summary" => {
                once(&mut seen, "_summary")?;
                match v.as_str() {
                    "count" => count_only = true,
                    "true" => shape.subset = Subset::Summary,
                    "data" => shape.subset = Subset::Data,
                    "false" => {}
                    "text" => {
                        return Err(unsupported(
                            k,
                            v,
                            "the GP systems' entries carry no narrative; use true, data, count or false",
                        ));
                    }
                    _ => {
                        return Err(unsupported(
                            k,
                            v,
                            "expected true (summary elements), data (no narrative), count (the total only) or false",
                        ));
                    }
                }
            }
            "_elements" => {
                once(&mut seen, "_elements")?;
                let mut names = Vec::new();
                for name in v.split(',').map(str::trim) {
                    let name = name
                        .strip_prefix(&format!("{resource_type}."))
                        .unwrap_or(name);
                    if !crate::subset::is_element(resource_type, name) {
                        return Err(unsupported(
                            k,
                            name,
                            format!("{resource_type} has no top-level element of that name"),
                        ));
                    }
                    names.push(name.to_owned());
                }
                elements = Some(names);
            }
            "_total" => {
                once(&mut seen, "_total")?;
                if !matches!(v.as_str(), "none" | "estimate" | "accurate") {
                    return Err(unsupported(
                        k,
                        v,
                        "expected none, estimate or accurate (the total is always given, exactly)",
                    ));
                }
            }
            "_pretty" => {
                once(&mut seen, "_pretty")?;
                shape.pretty = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(unsupported(k, v, "expected true or false")),
                };
            }
            _ => {}
        }
    }
    if let Some(names) = elements {
        if shape.subset != Subset::Full {
            return Err(SearchError::Invalid {
                name: "_elements".into(),
                why: "cannot be combined with _summary=true or _summary=data: ask for one or the other".into(),
            });
        }
        shape.subset = Subset::Elements(names);
    }
    if count_only {
        paging.count = 0;
    }
    Ok((paging, shape))
}

/// Reads `_sort` (one key: `date` or `-date`).
fn parse_sort(pairs: &[(String, String)]) -> Result<Option<SortOrder>, SearchError> {
    let mut sort = None;
    for (k, v) in pairs.iter().filter(|(k, _)| k == "_sort") {
        if sort.is_some() {
            return Err(SearchError::Repeated(k.clone()));
        }
        sort = Some(match v.as_str() {
            "date" => SortOrder::Date,
            "-date" => SortOrder::DateDescending,
            "_lastUpdated" | "-_lastUpdated" => return Err(unsupported(k, v, NO_LAST_UPDATED)),
            v if v.contains(',') => {
                return Err(unsupported(
                    k,
                    v,
                    "one sort key only: date (oldest first) or -date (most recent first)",
                ));
            }
            _ => {
                return Err(unsupported(
                    k,
                    v,
                    "entries sort by date (oldest first) or -date (most recent first) only",
                ));
            }
        });
    }
    Ok(sort)
}

/// Parses a `date` parameter value such as `ge2020-01-01` into the range it selects.
pub fn apply_date(range: &mut DateRange, value: &str) -> Result<(), SearchError> {
    let invalid = |why: String| SearchError::Invalid {
        name: "date".into(),
        why,
    };
    let (prefix, date) = match value.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb" | "ap")) => {
            (p, &value[2..])
        }
        _ => ("eq", value),
    };
    let d = PartialDate::parse(date).map_err(|e| invalid(e.to_string()))?;
    match prefix {
        "eq" => {
            range.at_least(d.first_day());
            range.at_most(d.last_day());
        }
        "ge" => range.at_least(d.first_day()),
        "le" => range.at_most(d.last_day()),
        "gt" | "sa" => range.at_least(day_after(d.last_day())),
        "lt" | "eb" => range.at_most(day_before(d.first_day())),
        other => {
            return Err(invalid(format!(
                "the '{other}' prefix is not supported; use eq, gt, lt, ge, le, sa or eb"
            )));
        }
    }
    Ok(())
}

/// Reads a patient reference: `9690937278`, `Patient/9690937278`, or an identifier
/// token `https://fhir.nhs.uk/Id/nhs-number|9690937278`.
pub fn parse_patient_reference(value: &str) -> Result<NhsNumber, SearchError> {
    if let Some((system, v)) = value.split_once('|') {
        if system != NHS_NUMBER_SYSTEM {
            return Err(SearchError::Invalid {
                name: "patient".into(),
                why: format!("identifier system must be {NHS_NUMBER_SYSTEM}"),
            });
        }
        return Ok(NhsNumber::parse(v)?);
    }
    let id = value.strip_prefix("Patient/").unwrap_or(value);
    Ok(NhsNumber::parse(id)?)
}

/// Reads the `patient` or `subject` parameter `name`: a [`parse_patient_reference`], or
/// a full reference URL on this server, `{base_url}/Patient/{NHS number}`.
fn patient_parameter(name: &str, value: &str, base_url: &str) -> Result<NhsNumber, SearchError> {
    if value.contains('|') || !value.contains("://") {
        return parse_patient_reference(value);
    }
    let on_this_server = format!(
        "this server's patients are {}/Patient/{{NHS number}}, or Patient/{{NHS number}}",
        base_url.trim_end_matches('/')
    );
    let Some((server, id)) = value.rsplit_once("/Patient/") else {
        return Err(unsupported(
            name,
            value,
            format!("not a reference to a Patient; {on_this_server}"),
        ));
    };
    if base_url.is_empty() || server.trim_end_matches('/') != base_url.trim_end_matches('/') {
        return Err(unsupported(
            name,
            value,
            format!("a patient on another server; {on_this_server}"),
        ));
    }
    Ok(NhsNumber::parse(id)?)
}

/// One value of a token search (`code=system|code`): `system|code`, `code` in any
/// system, or `system|` for any code of that system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub system: Option<String>,
    pub code: Option<String>,
}

impl Token {
    /// Parses one token value.
    pub fn parse(name: &str, value: &str) -> Result<Self, SearchError> {
        let invalid = |why: &str| SearchError::Invalid {
            name: name.to_owned(),
            why: why.to_owned(),
        };
        let (system, code) = match value.split_once('|') {
            Some((system, code)) => (Some(system), code),
            None => (None, value),
        };
        if code.contains('|') {
            return Err(invalid("expected system|code, code, or system|"));
        }
        let token = Self {
            system: system.filter(|s| !s.is_empty()).map(str::to_owned),
            code: Some(code).filter(|c| !c.is_empty()).map(str::to_owned),
        };
        if token.system.is_none() && token.code.is_none() {
            return Err(invalid("expected system|code, code, or system|"));
        }
        Ok(token)
    }

    /// True when `coding` is what this token names.
    pub fn matches(&self, coding: &crate::model::Coding) -> bool {
        self.system
            .as_deref()
            .is_none_or(|s| coding.system.as_deref() == Some(s))
            && self
                .code
                .as_deref()
                .is_none_or(|c| coding.code.as_deref() == Some(c))
    }
}

/// The element a token search looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenParam {
    /// `code`: what the entry records ([`Resource::codes`]).
    Code,
    Category,
    Status,
    ClinicalStatus,
    Identifier,
}

impl TokenParam {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "code" => Self::Code,
            "category" => Self::Category,
            "status" => Self::Status,
            "clinical-status" => Self::ClinicalStatus,
            "identifier" => Self::Identifier,
            _ => return None,
        })
    }

    /// The element's codings in `entry` (a `code` element as a coding of the system its
    /// R4 binding names; an identifier as its system and value).
    fn codings(self, entry: &Resource) -> Vec<Coding> {
        let coded = |system: &str, code: &str| Coding::new(system, code, "");
        let concepts = |list: &[CodeableConcept]| -> Vec<Coding> {
            list.iter().flat_map(|c| c.coding.iter().cloned()).collect()
        };
        match (self, entry) {
            (Self::Code, r) => r
                .codes()
                .into_iter()
                .flat_map(|c| c.coding.iter().cloned())
                .collect(),
            (Self::Category, Resource::AllergyIntolerance(r)) => r
                .category
                .iter()
                .map(|c| coded("http://hl7.org/fhir/allergy-intolerance-category", c))
                .collect(),
            (Self::Category, Resource::Condition(r)) => concepts(&r.category),
            (Self::Category, Resource::Observation(r)) => concepts(&r.category),
            (Self::Status, Resource::Observation(r)) => {
                vec![coded("http://hl7.org/fhir/observation-status", &r.status)]
            }
            (Self::Status, Resource::MedicationStatement(r)) => vec![coded(
                "http://hl7.org/fhir/CodeSystem/medication-statement-status",
                &r.status,
            )],
            (Self::Status, Resource::Immunization(r)) => {
                vec![coded("http://hl7.org/fhir/event-status", &r.status)]
            }
            (Self::Status, Resource::Encounter(r)) => {
                vec![coded("http://hl7.org/fhir/encounter-status", &r.status)]
            }
            (Self::ClinicalStatus, Resource::AllergyIntolerance(r)) => r
                .clinical_status
                .iter()
                .flat_map(|c| c.coding.clone())
                .collect(),
            (Self::ClinicalStatus, Resource::Condition(r)) => r
                .clinical_status
                .iter()
                .flat_map(|c| c.coding.clone())
                .collect(),
            (Self::Identifier, r) => identifiers(r)
                .iter()
                .map(|i| Coding {
                    system: i.system.clone(),
                    code: i.value.clone(),
                    ..Coding::default()
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The entry's identifiers.
fn identifiers(entry: &Resource) -> &[Identifier] {
    match entry {
        Resource::Patient(r) => &r.identifier,
        Resource::Organization(r) => &r.identifier,
        Resource::Practitioner(r) => &r.identifier,
        Resource::AllergyIntolerance(r) => &r.identifier,
        Resource::MedicationStatement(r) => &r.identifier,
        Resource::Condition(r) => &r.identifier,
        Resource::Observation(r) => &r.identifier,
        Resource::Immunization(r) => &r.identifier,
        Resource::Encounter(r) => &r.identifier,
        Resource::Appointment(r) => &r.identifier,
        Resource::DocumentReference(r) => &r.identifier,
        Resource::Slot(_)
        | Resource::Schedule(_)
        | Resource::Location(_)
        | Resource::PractitionerRole(_) => &[],
    }
}

/// One token parameter of a search: the entry matches when one of its codings is one
/// of `any` (or, with `:not`, none is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFilter {
    pub param: TokenParam,
    pub any: Vec<Token>,
    pub negated: bool,
}

impl TokenFilter {
    fn matches(&self, entry: &Resource) -> bool {
        let codings = self.param.codings(entry);
        let found = codings
            .iter()
            .any(|c| self.any.iter().any(|t| t.matches(c)));
        found != self.negated
    }
}

/// A validated search of a patient's clinical resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicalSearchParams {
    pub patient: NhsNumber,
    pub date: DateRange,
    /// `code`, `category`, `status`, `clinical-status`, `identifier`: each repetition must
    /// match (AND), by any of its comma-separated tokens (OR). `code` matches any coding
    /// of what the entry records (the SNOMED CT coding or the GP system's original Read
    /// v2 / CTV3 / local one).
    pub tokens: Vec<TokenFilter>,
    /// `_id`: only entries with one of these ids (empty = any).
    pub ids: Vec<String>,
    pub sort: Option<SortOrder>,
    pub paging: Paging,
    pub shape: Shape,
    /// `_include` / `_revinclude`.
    pub includes: Includes,
}

/// A dateTime as a UTC instant to sort by; a date alone as its first moment.
fn date_key(s: Option<&str>) -> Option<(i32, u8, u8, u8, u8, u8)> {
    let s = s?;
    if let Ok(instant) = crate::date::parse_instant_utc(s) {
        return Some(instant);
    }
    let (y, m, d) = PartialDate::parse(s).ok()?.first_day();
    Some((y, m, d, 0, 0, 0))
}

impl ClinicalSearchParams {
    /// True when `entry` is selected by the date, token and `_id` parameters.
    pub fn matches(&self, entry: &Resource) -> bool {
        self.date.contains(entry.clinical_date())
            && self.tokens.iter().all(|t| t.matches(entry))
            && (self.ids.is_empty() || self.ids.iter().any(|id| id == entry.id()))
    }

    /// Orders `entries` as `_sort` asks (a stable sort: entries of one moment keep the
    /// GP system's order); entries with no date come last either way.
    pub fn sort(&self, entries: &mut [&Resource]) {
        self.sort_by(entries, |r| r);
    }

    /// Like [`ClinicalSearchParams::sort`], for items that each hold an entry (`resource`).
    pub fn sort_by<T>(&self, entries: &mut [T], resource: impl Fn(&T) -> &Resource) {
        let Some(order) = self.sort else {
            return;
        };
        entries.sort_by(|a, b| {
            match (
                date_key(resource(a).clinical_date()),
                date_key(resource(b).clinical_date()),
            ) {
                (Some(x), Some(y)) if order == SortOrder::Date => x.cmp(&y),
                (Some(x), Some(y)) => y.cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }

    /// The parameters a page link repeats (all but paging, which it sets itself).
    pub fn link_params(&self, raw: &[(String, String)]) -> Vec<(String, String)> {
        result_set(raw)
    }
}

/// Parses `GET /{resource_type}?patient=…&date=…&_count=…&_offset=…` (a clinical type);
/// `base_url` is this server's FHIR base, which a full patient reference must name.
pub fn parse_clinical_search(
    resource_type: &str,
    pairs: &[(String, String)],
    limits: PagingLimits,
    base_url: &str,
) -> Result<ClinicalSearchParams, SearchError> {
    let mut patient = None;
    let mut date = DateRange::default();
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    let mut includes = Includes::default();
    for (k, v) in pairs {
        let (name, modifier) = match k.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (k.as_str(), None),
        };
        let no_modifier = || match modifier {
            Some(m) => Err(unsupported(
                k,
                v,
                format!("the ':{m}' modifier is not supported on {name}"),
            )),
            None => Ok(()),
        };
        match name {
            "_id" => {
                no_modifier()?;
                for id in v.split(',') {
                    // FHIR ids: 1 to 64 of A-Z a-z 0-9 - .
                    let ok = (1..=64).contains(&id.len())
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                    if !ok {
                        return Err(SearchError::Invalid {
                            name: "_id".into(),
                            why: "expected a comma-separated list of resource ids (1 to 64 of A-Z, a-z, 0-9, '-', '.')".into(),
                        });
                    }
                    ids.push(id.to_owned());
                }
            }
            "patient" | "subject" => {
                let nhs = match modifier {
                    None | Some("Patient") => patient_parameter(name, v, base_url)?,
                    Some("identifier") if v.contains('|') => parse_patient_reference(v)?,
                    Some("identifier") => {
                        return Err(SearchError::Invalid {
                            name: k.clone(),
                            why: format!("expected {NHS_NUMBER_SYSTEM}|<NHS number>"),
                        });
                    }
                    Some(m) => {
                        return Err(unsupported(
                            k,
                            v,
                            format!(
                                "the ':{m}' modifier is not supported on {name}; supported: :identifier, :Patient"
                            ),
                        ));
                    }
                };
                if patient.replace(nhs).is_some() {
                    return Err(SearchError::Repeated("patient".into()));
                }
            }
            "date" => {
                no_modifier()?;
                apply_date(&mut date, v)?;
            }
            "_lastUpdated" => return Err(unsupported(k, v, NO_LAST_UPDATED)),
            "_include" | "_revinclude" => includes.add(resource_type, k, v)?,
            "_sort" => no_modifier()?,
            _ if RESULT_PARAMS.contains(&k.as_str()) => {}
            _ => match TokenParam::named(name) {
                Some(param) => {
                    if let Some(why) = not_on_type(resource_type, name) {
                        return Err(SearchError::NotOnType {
                            name: name.to_owned(),
                            resource_type: resource_type.to_owned(),
                            why,
                        });
                    }
                    let negated = match modifier {
                        None => false,
                        Some("not") => true,
                        Some(m) => {
                            return Err(unsupported(
                                k,
                                v,
                                format!(
                                    "the ':{m}' modifier is not supported on {name}; supported: :not"
                                ),
                            ));
                        }
                    };
                    let any = v
                        .split(',')
                        .map(|t| Token::parse(name, t))
                        .collect::<Result<Vec<_>, _>>()?;
                    tokens.push(TokenFilter {
                        param,
                        any,
                        negated,
                    });
                }
                None => {
                    return Err(SearchError::UnknownParameter(
                        sanitize(k),
                        supported(resource_type),
                    ));
                }
            },
        }
    }
    let patient = patient.ok_or(SearchError::Missing("patient"))?;
    let (paging, shape) = parse_result(resource_type, pairs, limits)?;
    Ok(ClinicalSearchParams {
        patient,
        date,
        tokens,
        ids,
        sort: parse_sort(pairs)?,
        paging,
        shape,
        includes,
    })
}

/// A validated `GET /Patient?identifier=…` search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSearchParams {
    pub nhs_number: NhsNumber,
    pub paging: Paging,
    pub shape: Shape,
    /// `_include` / `_revinclude`.
    pub includes: Includes,
}

/// Parses `GET /Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|…`, with the
/// result parameters client libraries send (`_count=1` for "the first match").
pub fn parse_patient_search(
    pairs: &[(String, String)],
    limits: PagingLimits,
) -> Result<PatientSearchParams, SearchError> {
    let mut found = None;
    let mut includes = Includes::default();
    for (k, v) in pairs {
        match k.as_str() {
            k if ["_include", "_revinclude"]
                .contains(&k.split_once(':').map_or(k, |(name, _)| name)) =>
            {
                includes.add("Patient", k, v)?;
            }
            "identifier" => {
                if found.is_some() {
                    return Err(SearchError::Repeated(k.clone()));
                }
                let Some((system, value)) = v.split_once('|') else {
                    return Err(SearchError::Invalid {
                        name: "identifier".into(),
                        why: format!("expected {NHS_NUMBER_SYSTEM}|<NHS number>"),
                    });
                };
                if system != NHS_NUMBER_SYSTEM {
                    return Err(SearchError::Invalid {
                        name: "identifier".into(),
                        why: format!(
                            "only the NHS number system {NHS_NUMBER_SYSTEM} is searchable"
                        ),
                    });
                }
                found = Some(NhsNumber::parse(value)?);
            }
            k if k.starts_with("identifier:") => {
                return Err(unsupported(
                    k,
                    v,
                    "no modifier is supported on identifier: send https://fhir.nhs.uk/Id/nhs-number|{NHS number}",
                ));
            }
            "_sort" => {
                return Err(unsupported(
                    k,
                    v,
                    "a search by NHS number finds at most one patient: there is nothing to sort",
                ));
            }
            "_lastUpdated" => {
                return Err(unsupported(
                    k,
                    v,
                    "the GP systems do not say when a patient's record was last updated",
                ));
            }
            k if RESULT_PARAMS.contains(&k) => {}
            other => {
                return Err(SearchError::UnknownParameter(
                    sanitize(other),
                    supported("Patient"),
                ));
            }
        }
    }
    let (paging, shape) = parse_result("Patient", pairs, limits)?;
    Ok(PatientSearchParams {
        nhs_number: found.ok_or(SearchError::Missing("identifier"))?,
        paging,
        shape,
        includes,
    })
}

impl PatientSearchParams {
    /// The parameters a page link repeats (all but paging, which it sets itself).
    pub fn link_params(raw: &[(String, String)]) -> Vec<(String, String)> {
        result_set(raw)
    }
}

/// `raw` without the paging parameters: what `self`/`next` links carry through.
fn result_set(raw: &[(String, String)]) -> Vec<(String, String)> {
    raw.iter()
        .filter(|(k, _)| !PAGING_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Bounded, printable echo of a caller-supplied name.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://gw.example/FHIR/R4";

    fn q(s: &str) -> Vec<(String, String)> {
        parse_query(s).unwrap()
    }

    fn clinical(t: &str, query: &str) -> Result<ClinicalSearchParams, SearchError> {
        parse_clinical_search(
            t,
            &q(&format!("patient=9690937278&{query}")),
            PagingLimits::default(),
            BASE,
        )
    }

    #[test]
    fn clinical_search_reads_patient_dates_and_paging() {
        let p = parse_clinical_search(
            "Observation",
            &q("patient=Patient/9690937278&date=ge2020-01-01&date=lt2021&_count=10&_offset=20"),
            PagingLimits::default(),
            BASE,
        )
        .unwrap();
        assert_eq!(p.patient.to_string(), "9690937278");
        assert_eq!(p.date.from, Some((2020, 1, 1)));
        assert_eq!(p.date.to, Some((2020, 12, 31)));
        assert_eq!(
            p.paging,
            Paging {
                count: 10,
                offset: 20
            }
        );
        let p = parse_clinical_search(
            "Observation",
            &q("patient:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9690937278"),
            PagingLimits::default(),
            BASE,
        )
        .unwrap();
        assert_eq!(p.patient.to_string(), "9690937278");
        assert_eq!(p.paging.count, 50);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let lim = PagingLimits::default();
        assert_eq!(
            parse_clinical_search("Observation", &q("date=2020"), lim, BASE),
            Err(SearchError::Missing("patient"))
        );
        assert!(matches!(
            parse_clinical_search("Observation", &q("patient=9690937278&dtae=2020"), lim, BASE),
            Err(SearchError::UnknownParameter(p, _)) if p == "dtae"
        ));
        for bad in ["-1", "", "ten", "1.5", "+3"] {
            assert!(
                matches!(
                    parse_clinical_search(
                        "Observation",
                        &q(&format!("patient=9690937278&_count={bad}")),
                        lim,
                        BASE
                    ),
                    Err(SearchError::Count { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_clinical_search("Observation", &q("patient=9690937278&_summary=text"), lim, BASE),
            Err(SearchError::Unsupported { name, .. }) if name == "_summary"
        ));
        assert!(matches!(
            parse_clinical_search("Observation", &q("patient=9690937279"), lim, BASE),
            Err(SearchError::NhsNumber(_))
        ));
        assert!(matches!(
            parse_clinical_search(
                "Observation",
                &q("patient=9690937278&date=ne2020"),
                lim,
                BASE
            ),
            Err(SearchError::Invalid { .. })
        ));
        assert!(matches!(
            parse_clinical_search(
                "Observation",
                &q("patient=9690937278&date=2020-02-30"),
                lim,
                BASE
            ),
            Err(SearchError::Invalid { .. })
        ));
        assert_eq!(parse_query("a=%zz"), Err(SearchError::Encoding));
        assert_eq!(parse_query("a=%ff"), Err(SearchError::Encoding));
    }

    #[test]
    fn patient_search_needs_the_nhs_number_system() {
        let lim = PagingLimits::default();
        let found = parse_patient_search(
            &q("identifier=https://fhir.nhs.uk/Id/nhs-number|9690937278&_count=1"),
            lim,
        )
        .unwrap();
        assert_eq!(found.nhs_number.to_string(), "9690937278");
        assert_eq!(
            found.paging.count, 1,
            "medplum's searchOne, fhirpy's first()"
        );
        assert!(matches!(
            parse_patient_search(&q("identifier=9690937278"), lim),
            Err(SearchError::Invalid { .. })
        ));
        assert!(matches!(
            parse_patient_search(&q("name=smith"), lim),
            Err(SearchError::UnknownParameter(..))
        ));
        assert_eq!(
            parse_patient_search(&q(""), lim),
            Err(SearchError::Missing("identifier"))
        );
    }

    #[test]
    fn count_is_clamped_and_zero_or_summary_count_asks_for_the_total() {
        let lim = PagingLimits {
            default_count: 50,
            max_count: 250,
        };
        let count = |query: &str| {
            parse_clinical_search(
                "Observation",
                &q(&format!("patient=9690937278&{query}")),
                lim,
                BASE,
            )
            .unwrap()
            .paging
            .count
        };
        assert_eq!(count("_count=1000"), 250, "medplum's default page size");
        assert_eq!(count("_count=99999999999999999999999"), 250);
        assert_eq!(count("_count=250"), 250);
        assert_eq!(count("_count=7"), 7);
        assert_eq!(count("_count=0"), 0);
        assert_eq!(count("_summary=count"), 0);
        assert_eq!(count("_summary=count&_count=10"), 0);
        assert_eq!(count("_summary=false"), 50);
        let p = parse_clinical_search(
            "Observation",
            &q("patient=9690937278&_summary=count&date=2020"),
            lim,
            BASE,
        )
        .unwrap();
        assert_eq!(
            p.link_params(&q("patient=9690937278&_summary=count&date=2020")),
            q("patient=9690937278&_summary=count&date=2020"),
            "a page link carries every parameter but paging"
        );
    }

    #[test]
    fn code_tokens_match_any_coding_of_the_entry() {
        use crate::model::Coding;
        let lim = PagingLimits::default();
        let p = parse_clinical_search(
            "Observation",
            &q("patient=9690937278&code=http://snomed.info/sct|271650006,http://read.info/readv2|246A.&code=|246A."),
            lim,
            BASE,
        )
        .unwrap();
        assert_eq!(p.tokens.len(), 2);
        let read = Coding::new("http://read.info/readv2", "246A.", "O/E - diastolic BP");
        let snomed = Coding::new(
            "http://snomed.info/sct",
            "271650006",
            "Diastolic blood pressure",
        );
        let any_system = Token::parse("code", "246A.").unwrap();
        assert!(any_system.matches(&read));
        assert!(!any_system.matches(&snomed));
        let system_only = Token::parse("code", "http://snomed.info/sct|").unwrap();
        assert!(system_only.matches(&snomed) && !system_only.matches(&read));
        assert!(p.tokens[0].any.iter().any(|t| t.matches(&snomed)));
        assert!(p.tokens[0].any.iter().any(|t| t.matches(&read)));
        for bad in ["|", "", "a|b|c"] {
            assert!(
                matches!(
                    parse_clinical_search(
                        "Observation",
                        &q(&format!("patient=9690937278&code={bad}")),
                        lim,
                        BASE
                    ),
                    Err(SearchError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    fn observation(id: &str, status: &str, date: Option<&str>) -> Resource {
        serde_json::from_value(serde_json::json!({
            "resourceType": "Observation", "id": id, "status": status,
            "identifier": [{ "system": "https://example.com/readings", "value": id }],
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs" }] }],
            "code": { "text": "Body weight" },
            "subject": { "reference": "Patient/9690937278" },
            "effectiveDateTime": date,
        }))
        .unwrap()
    }

    #[test]
    fn token_parameters_match_status_category_and_identifier_and_not_negates() {
        let final_ = observation("a", "final", Some("2020-01-01"));
        let amended = observation("b", "amended", Some("2020-01-01"));
        let sel = |query: &str, r: &Resource| clinical("Observation", query).unwrap().matches(r);
        assert!(sel("status=final", &final_) && !sel("status=final", &amended));
        assert!(sel("status=final,amended", &amended));
        assert!(sel(
            "status=http://hl7.org/fhir/observation-status|final",
            &final_
        ));
        assert!(!sel("status=http://other|final", &final_));
        assert!(!sel("status:not=final", &final_) && sel("status:not=final", &amended));
        assert!(sel("category=vital-signs", &final_));
        assert!(sel(
            "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
            &final_
        ));
        assert!(!sel("category=laboratory", &final_));
        assert!(sel("identifier=https://example.com/readings|a", &final_));
        assert!(sel("identifier=a", &final_) && !sel("identifier=a", &amended));
        assert!(sel("identifier=https://example.com/readings|", &amended));
        assert!(sel("status=final&category=vital-signs", &final_));
        assert!(!sel("status=final&category=laboratory", &final_));
    }

    #[test]
    fn a_parameter_the_type_has_no_element_for_is_refused_naming_it() {
        for (t, p) in [
            ("Condition", "status=active"),
            ("AllergyIntolerance", "status=active"),
            ("Observation", "clinical-status=active"),
            ("Immunization", "category=x"),
            ("Encounter", "category=x"),
            ("MedicationStatement", "category=x"),
        ] {
            let e = clinical(t, p).unwrap_err();
            assert!(
                matches!(&e, SearchError::NotOnType { name, resource_type, .. }
                    if Some(name.as_str()) == p.split('=').next() && resource_type == t),
                "{t}?{p}: {e:?}"
            );
            assert_eq!(e.spine_code(), SpineCode::InvalidParameter);
            assert_eq!(e.status(), 400);
        }
        for (t, p) in [
            ("Condition", "clinical-status=active"),
            ("AllergyIntolerance", "clinical-status=active&category=food"),
            ("Encounter", "status=finished"),
            ("MedicationStatement", "status=active"),
            ("Immunization", "status=completed"),
        ] {
            assert!(clinical(t, p).is_ok(), "{t}?{p}");
        }
    }

    #[test]
    fn every_declared_parameter_is_accepted_with_its_example() {
        for t in CLINICAL_TYPES {
            for p in search_params(t) {
                let value = percent_encode(&p.example.replace("9000000009", "9690937278"));
                let query = format!("{}={value}", p.name);
                let query = if matches!(p.name, "patient" | "subject") {
                    format!("{query}&_count=1")
                } else {
                    format!("patient=9690937278&{query}")
                };
                let parsed = parse_clinical_search(t, &q(&query), PagingLimits::default(), BASE);
                assert!(parsed.is_ok(), "{t}?{query}: {parsed:?}");
            }
        }
        for p in search_params("Patient") {
            let query = format!(
                "{}={}",
                p.name,
                percent_encode(&p.example.replace("9000000009", "9690937278"))
            );
            let query = if p.name == "identifier" {
                query
            } else {
                format!("identifier=https://fhir.nhs.uk/Id/nhs-number|9690937278&{query}")
            };
            let parsed = parse_patient_search(&q(&query), PagingLimits::default());
            assert!(parsed.is_ok(), "Patient?{query}: {parsed:?}");
        }
        assert!(
            !search_params("Condition")
                .iter()
                .any(|p| p.name == "status"),
            "Condition has clinical-status only"
        );
        assert!(search_params("Organization").is_empty(), "read only");
    }

    #[test]
    fn unsupported_values_and_modifiers_are_refused_naming_parameter_and_value() {
        for query in [
            "_sort=code",
            "_sort=_lastUpdated",
            "_sort=-_lastUpdated",
            "_sort=date,code",
            "_lastUpdated=ge2020",
            "_total=exact",
            "_pretty=yes",
            "_summary=maybe",
            "_elements=colour",
            "code:text=weight",
            "status:missing=true",
            "date:missing=true",
            "patient:Group=1",
        ] {
            let e = parse_clinical_search(
                "Observation",
                &q(&format!("subject=9690937278&{query}")),
                PagingLimits::default(),
                BASE,
            )
            .unwrap_err();
            let (name, value) = query.split_once('=').unwrap();
            let message = e.to_string();
            assert!(
                matches!(e, SearchError::Unsupported { .. }),
                "{query}: {e:?}"
            );
            assert!(
                message.contains(name) && message.contains(value),
                "{query}: {message}"
            );
            assert_eq!(e.spine_code(), SpineCode::InvalidParameter, "{query}");
        }
        let e = clinical("Observation", "_lastUpdated=ge2020").unwrap_err();
        assert!(e.to_string().contains("GP systems"), "{e}");
        assert!(matches!(
            clinical("Observation", "_summary=true&_elements=code"),
            Err(SearchError::Invalid { name, .. }) if name == "_elements"
        ));
        assert!(matches!(
            clinical("Observation", "_sort=date&_sort=-date"),
            Err(SearchError::Repeated(_))
        ));
        assert!(matches!(
            parse_patient_search(
                &q("identifier=https://fhir.nhs.uk/Id/nhs-number|9690937278&_sort=date"),
                PagingLimits::default()
            ),
            Err(SearchError::Unsupported { name, .. }) if name == "_sort"
        ));
    }

    #[test]
    fn result_parameters_shape_the_answer() {
        let p = clinical(
            "Observation",
            "_summary=true&_total=accurate&_pretty=true&_sort=-date",
        )
        .unwrap();
        assert_eq!(p.shape.subset, Subset::Summary);
        assert!(p.shape.pretty);
        assert_eq!(p.sort, Some(SortOrder::DateDescending));
        assert_eq!(
            clinical("Observation", "_summary=data")
                .unwrap()
                .shape
                .subset,
            Subset::Data
        );
        assert_eq!(
            clinical(
                "Observation",
                "_elements=Observation.code,effective[x],valueQuantity"
            )
            .unwrap()
            .shape
            .subset,
            Subset::Elements(vec![
                "code".into(),
                "effective[x]".into(),
                "valueQuantity".into()
            ])
        );
        for total in ["none", "estimate", "accurate"] {
            assert!(clinical("Condition", &format!("_total={total}")).is_ok());
        }
        let found = parse_patient_search(
            &q("identifier=https://fhir.nhs.uk/Id/nhs-number|9690937278&_elements=birthDate&_pretty=false"),
            PagingLimits::default(),
        )
        .unwrap();
        assert_eq!(
            found.shape.subset,
            Subset::Elements(vec!["birthDate".into()])
        );
    }

    #[test]
    fn sort_orders_by_date_with_undated_entries_last() {
        let entries = [
            observation("mid", "final", Some("2021-06-01T10:00:00+01:00")),
            observation("none", "final", None),
            observation("old", "final", Some("2019")),
            observation("new", "final", Some("2021-06-01T09:30:00Z")),
        ];
        let order = |query: &str| {
            let p = clinical("Observation", query).unwrap();
            let mut refs: Vec<&Resource> = entries.iter().collect();
            p.sort(&mut refs);
            refs.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>()
        };
        // 10:00+01:00 is 09:00Z: before 09:30Z.
        assert_eq!(order("_sort=date"), ["old", "mid", "new", "none"]);
        assert_eq!(order("_sort=-date"), ["new", "mid", "old", "none"]);
        assert_eq!(
            order(""),
            ["mid", "none", "old", "new"],
            "the GP system's order"
        );
    }

    #[test]
    fn patient_and_subject_take_references_on_this_server_only() {
        let lim = PagingLimits::default();
        for value in [
            "9690937278",
            "Patient/9690937278",
            "https://gw.example/FHIR/R4/Patient/9690937278",
            "https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9690937278",
        ] {
            for name in ["patient", "subject", "subject:Patient"] {
                let p =
                    parse_clinical_search("Condition", &q(&format!("{name}={value}")), lim, BASE);
                assert_eq!(
                    p.map(|p| p.patient.to_string()),
                    Ok("9690937278".to_owned()),
                    "{name}={value}"
                );
            }
        }
        let e = parse_clinical_search(
            "Condition",
            &q("patient=https://other.example/fhir/Patient/9690937278"),
            lim,
            BASE,
        )
        .unwrap_err();
        assert!(
            matches!(&e, SearchError::Unsupported { name, .. } if name == "patient"),
            "{e:?}"
        );
        assert!(e.to_string().contains("another server"), "{e}");
        assert!(matches!(
            parse_clinical_search(
                "Condition",
                &q("patient=9690937278&subject=9690937278"),
                lim,
                BASE
            ),
            Err(SearchError::Repeated(_))
        ));
    }
}
