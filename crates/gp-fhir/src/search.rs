//! Search-parameter parsing: query strings into typed, validated searches.
//!
//! Unknown parameters are refused rather than silently ignored: a supplier who
//! misspells `date` must not receive a whole record believing it was filtered.

use crate::date::{DateRange, PartialDate, day_after, day_before};
use crate::ids::{NHS_NUMBER_SYSTEM, NhsNumber, NhsNumberError};
use crate::outcome::{FhirError, IssueType, SpineCode};

/// Longest query string value the gateway will look at.
const MAX_VALUE_LEN: usize = 512;

/// A bad search request; each variant names the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("query string is not valid percent-encoded UTF-8")]
    Encoding,
    #[error("unknown search parameter '{0}' (supported: {1})")]
    UnknownParameter(String, &'static str),
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
}

impl FhirError for SearchError {
    fn status(&self) -> u16 {
        400
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NhsNumber(_) => SpineCode::InvalidResourceId,
            Self::Missing(_) => SpineCode::MissingValue,
            Self::UnknownParameter(..) => SpineCode::InvalidParameter,
            _ => SpineCode::InvalidSearchData,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::Missing(_) => IssueType::Required,
            Self::UnknownParameter(..) => IssueType::NotSupported,
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

/// Result-set parameters every search accepts: `_count`, `_offset`, `_format`,
/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Entries per page; 0 asks for the total only (`_count=0`, `_summary=count`).
    pub count: u32,
    pub offset: u32,
}

/// Parameters accepted on every search, handled by the server rather than the adapter.
const RESULT_PARAMS: [&str; 4] = ["_count", "_offset", "_format", "_summary"];

fn parse_paging(pairs: &[(String, String)], limits: PagingLimits) -> Result<Paging, SearchError> {
    let mut paging = Paging {
        count: limits.default_count,
        offset: 0,
    };
    let mut seen = (false, false, false);
    let mut count_only = false;
    for (k, v) in pairs {
        match k.as_str() {
            "_count" => {
                if std::mem::replace(&mut seen.0, true) {
                    return Err(SearchError::Repeated(k.clone()));
                }
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
                if std::mem::replace(&mut seen.1, true) {
                    return Err(SearchError::Repeated(k.clone()));
                }
                paging.offset = v.parse::<u32>().map_err(|_| SearchError::Invalid {
                    name: k.clone(),
                    why: "expected a non-negative integer".into(),
                })?;
            }
            "_summary" => {
                if std::mem::replace(&mut seen.2, true) {
                    return Err(SearchError::Repeated(k.clone()));
                }
                match v.as_str() {
                    "count" => count_only = true,
                    "false" => {}
                    _ => {
                        return Err(SearchError::Invalid {
                            name: k.clone(),
                            why: "only 'count' (the total, no entries) and 'false' (whole resources) are supported".into(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if count_only {
        paging.count = 0;
    }
    Ok(paging)
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

/// A validated search of a patient's clinical resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicalSearchParams {
    pub patient: NhsNumber,
    pub date: DateRange,
    /// `code`: each repetition must match (AND), by any of its comma-separated tokens
    /// (OR), against any coding of what the entry records (the SNOMED CT coding or the
    /// GP system's original Read v2 / CTV3 / local one).
    pub code: Vec<Vec<Token>>,
    /// `_id`: only entries with one of these ids (empty = any).
    pub ids: Vec<String>,
    pub paging: Paging,
}

impl ClinicalSearchParams {
    /// True when `entry` records what every `code` parameter names.
    pub fn codes_match(&self, entry: &crate::model::Resource) -> bool {
        let codings: Vec<&crate::model::Coding> = entry
            .codes()
            .into_iter()
            .flat_map(|cc| cc.coding.iter())
            .collect();
        self.code
            .iter()
            .all(|any| codings.iter().any(|c| any.iter().any(|t| t.matches(c))))
    }

    /// The parameters that define the result set (for `self`/`next` links), without paging.
    pub fn link_params(&self, raw: &[(String, String)]) -> Vec<(String, String)> {
        result_set(raw)
    }
}

/// Parses `GET /{ClinicalType}?patient=…&date=…&_count=…&_offset=…`.
pub fn parse_clinical_search(
    pairs: &[(String, String)],
    limits: PagingLimits,
) -> Result<ClinicalSearchParams, SearchError> {
    const SUPPORTED: &str =
        "patient, patient:identifier, subject, date, code, _id, _count, _offset, _summary, _format";
    let mut patient = None;
    let mut date = DateRange::default();
    let mut code = Vec::new();
    let mut ids = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "_id" => {
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
            "patient" | "patient:identifier" | "subject" => {
                if patient.is_some() {
                    return Err(SearchError::Repeated("patient".into()));
                }
                let value = if k == "patient:identifier" && !v.contains('|') {
                    return Err(SearchError::Invalid {
                        name: k.clone(),
                        why: format!("expected {NHS_NUMBER_SYSTEM}|<NHS number>"),
                    });
                } else {
                    v
                };
                patient = Some(parse_patient_reference(value)?);
            }
            "date" => apply_date(&mut date, v)?,
            "code" => code.push(
                v.split(',')
                    .map(|t| Token::parse(k, t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            k if RESULT_PARAMS.contains(&k) => {}
            other => return Err(SearchError::UnknownParameter(sanitize(other), SUPPORTED)),
        }
    }
    let patient = patient.ok_or(SearchError::Missing("patient"))?;
    Ok(ClinicalSearchParams {
        patient,
        date,
        code,
        ids,
        paging: parse_paging(pairs, limits)?,
    })
}

/// A validated `GET /Patient?identifier=…` search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientSearchParams {
    pub nhs_number: NhsNumber,
    pub paging: Paging,
}

/// Parses `GET /Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|…`, with the
/// result parameters client libraries send (`_count=1` for "the first match").
pub fn parse_patient_search(
    pairs: &[(String, String)],
    limits: PagingLimits,
) -> Result<PatientSearchParams, SearchError> {
    const SUPPORTED: &str = "identifier, _count, _offset, _summary, _format";
    let mut found = None;
    for (k, v) in pairs {
        match k.as_str() {
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
            k if RESULT_PARAMS.contains(&k) => {}
            other => return Err(SearchError::UnknownParameter(sanitize(other), SUPPORTED)),
        }
    }
    Ok(PatientSearchParams {
        nhs_number: found.ok_or(SearchError::Missing("identifier"))?,
        paging: parse_paging(pairs, limits)?,
    })
}

impl PatientSearchParams {
    /// The parameters that define the result set (for `self`/`next` links), without paging.
    pub fn link_params(raw: &[(String, String)]) -> Vec<(String, String)> {
        result_set(raw)
    }
}

/// `raw` without the result parameters (paging, format, summary).
fn result_set(raw: &[(String, String)]) -> Vec<(String, String)> {
    raw.iter()
        .filter(|(k, _)| !RESULT_PARAMS.contains(&k.as_str()))
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

    fn q(s: &str) -> Vec<(String, String)> {
        parse_query(s).unwrap()
    }

    #[test]
    fn clinical_search_reads_patient_dates_and_paging() {
        let p = parse_clinical_search(
            &q("patient=Patient/9690937278&date=ge2020-01-01&date=lt2021&_count=10&_offset=20"),
            PagingLimits::default(),
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
            &q("patient:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9690937278"),
            PagingLimits::default(),
        )
        .unwrap();
        assert_eq!(p.patient.to_string(), "9690937278");
        assert_eq!(p.paging.count, 50);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let lim = PagingLimits::default();
        assert_eq!(
            parse_clinical_search(&q("date=2020"), lim),
            Err(SearchError::Missing("patient"))
        );
        assert!(matches!(
            parse_clinical_search(&q("patient=9690937278&dtae=2020"), lim),
            Err(SearchError::UnknownParameter(p, _)) if p == "dtae"
        ));
        for bad in ["-1", "", "ten", "1.5", "+3"] {
            assert!(
                matches!(
                    parse_clinical_search(&q(&format!("patient=9690937278&_count={bad}")), lim),
                    Err(SearchError::Count { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_clinical_search(&q("patient=9690937278&_summary=true"), lim),
            Err(SearchError::Invalid { name, .. }) if name == "_summary"
        ));
        assert!(matches!(
            parse_clinical_search(&q("patient=9690937279"), lim),
            Err(SearchError::NhsNumber(_))
        ));
        assert!(matches!(
            parse_clinical_search(&q("patient=9690937278&date=ne2020"), lim),
            Err(SearchError::Invalid { .. })
        ));
        assert!(matches!(
            parse_clinical_search(&q("patient=9690937278&date=2020-02-30"), lim),
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
            parse_clinical_search(&q(&format!("patient=9690937278&{query}")), lim)
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
        let p =
            parse_clinical_search(&q("patient=9690937278&_summary=count&date=2020"), lim).unwrap();
        assert_eq!(
            p.link_params(&q("patient=9690937278&_summary=count&date=2020")),
            q("patient=9690937278&date=2020")
        );
    }

    #[test]
    fn code_tokens_match_any_coding_of_the_entry() {
        use crate::model::Coding;
        let lim = PagingLimits::default();
        let p = parse_clinical_search(
            &q("patient=9690937278&code=http://snomed.info/sct|271650006,http://read.info/readv2|246A.&code=|246A."),
            lim,
        )
        .unwrap();
        assert_eq!(p.code.len(), 2);
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
        assert!(p.code[0].iter().any(|t| t.matches(&snomed)));
        assert!(p.code[0].iter().any(|t| t.matches(&read)));
        for bad in ["|", "", "a|b|c"] {
            assert!(
                matches!(
                    parse_clinical_search(&q(&format!("patient=9690937278&code={bad}")), lim),
                    Err(SearchError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }
}
