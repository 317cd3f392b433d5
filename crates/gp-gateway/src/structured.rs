//! `POST /Patient/$gpc.getstructuredrecord`: GP Connect's structured record operation,
//! rendered in R4. A Parameters body names the patient and the clinical areas wanted;
//! the answer is a `collection` Bundle of Patient, Organization, Practitioner and the
//! clinical resources, with one `List` per area.

use gp_adapter::ClinicalType;
use gp_fhir::date::{DateRange, PartialDate};
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use gp_fhir::model::{Resource, SNOMED};
use gp_fhir::{FhirError, IssueType, NhsNumber, NhsNumberError, SpineCode};
use serde_json::{Value, json};

/// Why a structured record request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructuredError {
    #[error("request body is not a FHIR Parameters resource: {0}")]
    NotParameters(String),
    #[error("parameter '{name}': {why}")]
    InvalidParameter { name: String, why: String },
    #[error("{0}")]
    NhsNumber(#[from] NhsNumberError),
}

impl FhirError for StructuredError {
    fn status(&self) -> u16 {
        match self {
            Self::NotParameters(_) | Self::NhsNumber(_) => 400,
            Self::InvalidParameter { .. } => 422,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NotParameters(_) => SpineCode::InvalidResource,
            Self::NhsNumber(_) => SpineCode::InvalidResourceId,
            Self::InvalidParameter { .. } => SpineCode::InvalidParameter,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::NotParameters(_) => IssueType::Structure,
            _ => IssueType::Invalid,
        }
    }
    fn expression(&self) -> Vec<String> {
        match self {
            Self::InvalidParameter { name, .. } => {
                vec![format!("Parameters.parameter.where(name = '{name}')")]
            }
            _ => Vec::new(),
        }
    }
}

fn invalid(name: &str, why: impl Into<String>) -> StructuredError {
    StructuredError::InvalidParameter {
        name: name.to_owned(),
        why: why.into(),
    }
}

/// Problem status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemStatus {
    Active,
    Inactive,
}

/// One clinical area asked for, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Area {
    Allergies {
        include_resolved: bool,
    },
    Medication {
        from: Option<PartialDate>,
    },
    Consultations {
        period: Option<DateRange>,
        most_recent: Option<u32>,
    },
    Problems {
        status: Option<ProblemStatus>,
    },
    Immunisations,
    Investigations,
}

impl Area {
    /// The FHIR type the area's entries are.
    pub fn clinical_type(&self) -> ClinicalType {
        match self {
            Self::Allergies { .. } => ClinicalType::AllergyIntolerance,
            Self::Medication { .. } => ClinicalType::MedicationStatement,
            Self::Consultations { .. } => ClinicalType::Encounter,
            Self::Problems { .. } => ClinicalType::Condition,
            Self::Immunisations => ClinicalType::Immunization,
            Self::Investigations => ClinicalType::Observation,
        }
    }

    /// The List's SNOMED CT code and title (GP Connect's list codes).
    fn list_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::Allergies { .. } => ("886921000000105", "Allergies and adverse reactions"),
            Self::Medication { .. } => ("933361000000108", "Medications and medical devices"),
            Self::Consultations { .. } => ("1149501000000101", "List of consultations"),
            Self::Problems { .. } => ("717711000000103", "Problems"),
            Self::Immunisations => ("1102181000000102", "Immunisations"),
            Self::Investigations => ("887191000000108", "Investigations and results"),
        }
    }

    /// Whether an entry of this area is included under the area's options.
    fn keeps(&self, r: &Resource) -> bool {
        match (self, r) {
            (
                Self::Allergies {
                    include_resolved: false,
                },
                Resource::AllergyIntolerance(a),
            ) => a
                .clinical_status
                .as_ref()
                .is_none_or(|s| s.coding.iter().any(|c| c.code.as_deref() == Some("active"))),
            (Self::Medication { from: Some(from) }, Resource::MedicationStatement(m)) => {
                // Still running on or after the date, or started since.
                let period = m.effective_period.as_ref();
                let ends = period
                    .and_then(|p| p.end.as_deref())
                    .and_then(|e| PartialDate::parse(e).ok());
                ends.is_none_or(|e| e.last_day() >= from.first_day())
            }
            (
                Self::Consultations {
                    period: Some(range),
                    ..
                },
                r,
            ) => range.contains(r.clinical_date()),
            (Self::Problems { status: Some(want) }, Resource::Condition(c)) => {
                let active = c
                    .clinical_status
                    .as_ref()
                    .is_some_and(|s| s.coding.iter().any(|x| x.code.as_deref() == Some("active")));
                active == (*want == ProblemStatus::Active)
            }
            _ => true,
        }
    }
}

/// A parsed structured record request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredRequest {
    pub nhs_number: NhsNumber,
    pub areas: Vec<Area>,
}

impl StructuredRequest {
    /// The request as a Parameters resource that [`parse`] reads back to it: what is
    /// remembered to answer a Bundle or a List of the structured record again.
    pub fn to_parameters(&self) -> Value {
        let day = |(y, m, d): (i32, u8, u8)| PartialDate::ymd(y, m, d).to_string();
        let mut params = vec![json!({
            "name": "patientNHSNumber",
            "valueIdentifier": { "system": NHS_NUMBER_SYSTEM, "value": self.nhs_number.to_string() },
        })];
        for area in &self.areas {
            params.push(match area {
                Area::Allergies { include_resolved } => json!({
                    "name": "includeAllergies",
                    "part": [{ "name": "includeResolvedAllergies", "valueBoolean": include_resolved }],
                }),
                Area::Medication { from } => {
                    let part: Vec<Value> = from
                        .iter()
                        .map(|f| json!({ "name": "medicationSearchFromDate", "valueDate": f.to_string() }))
                        .collect();
                    json!({ "name": "includeMedication", "part": part })
                }
                Area::Consultations {
                    period,
                    most_recent,
                } => {
                    let mut part = Vec::new();
                    if let Some(range) = period {
                        let mut vp = serde_json::Map::new();
                        if let Some(from) = range.from {
                            vp.insert("start".into(), day(from).into());
                        }
                        if let Some(to) = range.to {
                            vp.insert("end".into(), day(to).into());
                        }
                        part.push(json!({ "name": "consultationSearchPeriod", "valuePeriod": vp }));
                    }
                    if let Some(n) = most_recent {
                        part.push(json!({ "name": "includeNumberOfMostRecent", "valuePositiveInt": n }));
                    }
                    json!({ "name": "includeConsultations", "part": part })
                }
                Area::Problems { status } => {
                    let part: Vec<Value> = status
                        .iter()
                        .map(|s| {
                            let code = match s {
                                ProblemStatus::Active => "active",
                                ProblemStatus::Inactive => "inactive",
                            };
                            json!({ "name": "filterStatus", "valueCode": code })
                        })
                        .collect();
                    json!({ "name": "includeProblems", "part": part })
                }
                Area::Immunisations => json!({ "name": "includeImmunisations" }),
                Area::Investigations => json!({ "name": "includeInvestigations" }),
            });
        }
        json!({ "resourceType": "Parameters", "parameter": params })
    }

    /// The same request for `area` alone (what a List of it answers).
    pub fn only(&self, area: &Area) -> Self {
        Self {
            nhs_number: self.nhs_number,
            areas: vec![area.clone()],
        }
    }
}

/// The id of the List of `area` in the Bundle `bundle_id`.
pub fn list_id(bundle_id: &str, area: &Area) -> String {
    format!("{bundle_id}-{}", area.list_code().0)
}

/// The `List` of one area of the Bundle `bundle_id`, its entries as references (small:
/// built as JSON).
pub fn list(
    bundle_id: &str,
    last_updated: &str,
    nhs: NhsNumber,
    area: &Area,
    resources: &[&Resource],
) -> Value {
    let (code, title) = area.list_code();
    let mut list = json!({
        "resourceType": "List",
        "id": list_id(bundle_id, area),
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-List"] },
        "status": "current",
        "mode": "snapshot",
        "title": title,
        "code": { "coding": [{ "system": SNOMED, "code": code, "display": title }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "date": last_updated,
        "entry": resources.iter().map(|r| json!({ "item": { "reference": format!("{}/{}", r.resource_type(), r.id()) } })).collect::<Vec<_>>(),
    });
    if resources.is_empty()
        && let Some(obj) = list.as_object_mut()
    {
        obj.remove("entry");
        obj.insert(
            "emptyReason".into(),
            json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nocontent", "display": "No Content Recorded" }] }),
        );
    }
    list
}

fn parts(p: &Value) -> Vec<&Value> {
    p.get("part")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn part_name(p: &Value) -> &str {
    p.get("name").and_then(Value::as_str).unwrap_or("")
}

fn check_parts(parent: &str, p: &Value, allowed: &[&str]) -> Result<(), StructuredError> {
    let mut seen = Vec::new();
    for part in parts(p) {
        let name = part_name(part);
        if !allowed.contains(&name) {
            return Err(invalid(
                &format!("{parent}.{name}"),
                format!("not a part of {parent} (allowed: {})", allowed.join(", ")),
            ));
        }
        if seen.contains(&name) {
            return Err(invalid(&format!("{parent}.{name}"), "given more than once"));
        }
        seen.push(name);
    }
    Ok(())
}

fn part<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    parts(p).into_iter().find(|x| part_name(x) == name)
}

fn date_value(
    name: &str,
    v: Option<&Value>,
    today: (i32, u8, u8),
) -> Result<Option<PartialDate>, StructuredError> {
    let Some(v) = v else { return Ok(None) };
    let text = v
        .as_str()
        .ok_or_else(|| invalid(name, "must be a date string"))?;
    let d = PartialDate::parse(text).map_err(|e| invalid(name, e.to_string()))?;
    if d.first_day() > today {
        return Err(invalid(name, "must not be in the future"));
    }
    Ok(Some(d))
}

/// Parses the Parameters body. `today` bounds dates that may not be in the future.
pub fn parse(body: &[u8], today: (i32, u8, u8)) -> Result<StructuredRequest, StructuredError> {
    let v = gp_fhir::validate::precheck(body)
        .map_err(|e| StructuredError::NotParameters(e.to_string()))?;
    if v["resourceType"] != "Parameters" {
        return Err(StructuredError::NotParameters(format!(
            "resourceType is {}, not Parameters",
            v["resourceType"]
        )));
    }
    let params = v
        .get("parameter")
        .and_then(Value::as_array)
        .ok_or_else(|| StructuredError::NotParameters("no parameter array".into()))?;
    let mut nhs = None;
    let mut areas: Vec<Area> = Vec::new();
    for p in params {
        let name = part_name(p);
        let area = match name {
            "patientNHSNumber" => {
                if nhs.is_some() {
                    return Err(invalid(name, "given more than once"));
                }
                let id = p
                    .get("valueIdentifier")
                    .ok_or_else(|| invalid(name, "needs a valueIdentifier"))?;
                if id.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
                    return Err(invalid(
                        name,
                        format!("identifier system must be {NHS_NUMBER_SYSTEM}"),
                    ));
                }
                let value = id
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(name, "identifier has no value"))?;
                nhs = Some(NhsNumber::parse(value)?);
                continue;
            }
            "includeAllergies" => {
                check_parts(name, p, &["includeResolvedAllergies"])?;
                let resolved = part(p, "includeResolvedAllergies")
                    .ok_or_else(|| invalid(name, "part includeResolvedAllergies is required"))?;
                let include_resolved = resolved
                    .get("valueBoolean")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| {
                        invalid(
                            "includeAllergies.includeResolvedAllergies",
                            "needs a valueBoolean",
                        )
                    })?;
                Area::Allergies { include_resolved }
            }
            "includeMedication" => {
                check_parts(name, p, &["medicationSearchFromDate"])?;
                let from = date_value(
                    "includeMedication.medicationSearchFromDate",
                    part(p, "medicationSearchFromDate").and_then(|x| x.get("valueDate")),
                    today,
                )?;
                Area::Medication { from }
            }
            "includeConsultations" => {
                check_parts(
                    name,
                    p,
                    &["consultationSearchPeriod", "includeNumberOfMostRecent"],
                )?;
                let period = part(p, "consultationSearchPeriod");
                let most_recent = part(p, "includeNumberOfMostRecent");
                if period.is_some() && most_recent.is_some() {
                    return Err(invalid(
                        "includeConsultations",
                        "consultationSearchPeriod and includeNumberOfMostRecent cannot be combined",
                    ));
                }
                let period = match period {
                    None => None,
                    Some(p) => {
                        let vp = p.get("valuePeriod").ok_or_else(|| {
                            invalid(
                                "includeConsultations.consultationSearchPeriod",
                                "needs a valuePeriod",
                            )
                        })?;
                        let key = "includeConsultations.consultationSearchPeriod";
                        let start = date_value(key, vp.get("start"), today)?;
                        let end = match vp.get("end").and_then(Value::as_str) {
                            None => None,
                            Some(e) => Some(
                                PartialDate::parse(e).map_err(|e| invalid(key, e.to_string()))?,
                            ),
                        };
                        if let (Some(s), Some(e)) = (start, end)
                            && s.first_day() > e.last_day()
                        {
                            return Err(invalid(key, "start is after end"));
                        }
                        let mut range = DateRange::default();
                        if let Some(s) = start {
                            range.at_least(s.first_day());
                        }
                        if let Some(e) = end {
                            range.at_most(e.last_day());
                        }
                        Some(range)
                    }
                };
                let most_recent = match most_recent {
                    None => None,
                    Some(p) => Some(
                        p.get("valuePositiveInt")
                            .and_then(Value::as_u64)
                            .filter(|n| (1..=1000).contains(n))
                            .map(|n| n as u32)
                            .ok_or_else(|| {
                                invalid(
                                    "includeConsultations.includeNumberOfMostRecent",
                                    "needs a valuePositiveInt from 1 to 1000",
                                )
                            })?,
                    ),
                };
                Area::Consultations {
                    period,
                    most_recent,
                }
            }
            "includeProblems" => {
                check_parts(name, p, &["filterStatus"])?;
                let status = match part(p, "filterStatus")
                    .map(|x| x.get("valueCode").and_then(Value::as_str))
                {
                    None => None,
                    Some(Some("active")) => Some(ProblemStatus::Active),
                    Some(Some("inactive")) => Some(ProblemStatus::Inactive),
                    Some(_) => {
                        return Err(invalid(
                            "includeProblems.filterStatus",
                            "valueCode must be 'active' or 'inactive'",
                        ));
                    }
                };
                Area::Problems { status }
            }
            "includeImmunisations" => {
                check_parts(name, p, &[])?;
                Area::Immunisations
            }
            "includeInvestigations" => {
                check_parts(name, p, &[])?;
                Area::Investigations
            }
            "" => return Err(invalid("(unnamed)", "every parameter needs a name")),
            other => {
                let shown: String = other.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(invalid(
                    &shown,
                    "not a parameter of $gpc.getstructuredrecord",
                ));
            }
        };
        if areas
            .iter()
            .any(|a| a.clinical_type() == area.clinical_type())
        {
            return Err(invalid(name, "given more than once"));
        }
        areas.push(area);
    }
    let nhs_number = nhs.ok_or_else(|| invalid("patientNHSNumber", "is required"))?;
    Ok(StructuredRequest { nhs_number, areas })
}

/// Applies an area's options to the entries the GP system holds (already without
/// confidential entries), most recent first.
pub fn select<'a>(area: &Area, entries: impl Iterator<Item = &'a Resource>) -> Vec<&'a Resource> {
    let kept = entries.filter(|r| area.keeps(r));
    match area {
        Area::Consultations {
            most_recent: Some(n),
            ..
        } => kept.take(*n as usize).collect(),
        _ => kept.collect(),
    }
}

/// The `collection` Bundle, serialised straight from the resources (never through an
/// intermediate `serde_json::Value` tree, which cost most of the time for large records).
pub struct StructuredBundle<'a> {
    base_url: &'a str,
    id: &'a str,
    last_updated: &'a str,
    nhs: NhsNumber,
    demographics: Vec<Resource>,
    areas: Vec<(&'a Area, Vec<&'a Resource>)>,
}

/// Builds the `collection` Bundle: Patient, Organization and Practitioner, then for each
/// area its `List` followed by the entries it lists.
pub fn bundle<'a>(
    base_url: &'a str,
    id: &'a str,
    last_updated: &'a str,
    nhs: NhsNumber,
    demographics: Vec<Resource>,
    areas: Vec<(&'a Area, Vec<&'a Resource>)>,
) -> StructuredBundle<'a> {
    StructuredBundle {
        base_url,
        id,
        last_updated,
        nhs,
        demographics,
        areas,
    }
}

/// One `Bundle.entry`.
#[derive(serde::Serialize)]
struct Entry<R: serde::Serialize> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: R,
}

impl StructuredBundle<'_> {
    fn entry<'r>(&self, r: &'r Resource) -> Entry<&'r Resource> {
        Entry {
            full_url: format!("{}/{}/{}", self.base_url, r.resource_type(), r.id()),
            resource: r,
        }
    }

    /// The `List` of one area.
    fn list(&self, area: &Area, resources: &[&Resource]) -> Entry<Value> {
        Entry {
            full_url: format!("{}/List/{}", self.base_url, list_id(self.id, area)),
            resource: list(self.id, self.last_updated, self.nhs, area, resources),
        }
    }
}

/// `Bundle.entry`, in order.
struct Entries<'b, 'a>(&'b StructuredBundle<'a>);

impl serde::Serialize for Entries<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let b = self.0;
        let mut seq = s.serialize_seq(None)?;
        for r in &b.demographics {
            seq.serialize_element(&b.entry(r))?;
        }
        for (area, resources) in &b.areas {
            seq.serialize_element(&b.list(area, resources))?;
            for r in resources {
                seq.serialize_element(&b.entry(r))?;
            }
        }
        seq.end()
    }
}

impl serde::Serialize for StructuredBundle<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("resourceType", "Bundle")?;
        m.serialize_entry("id", self.id)?;
        m.serialize_entry("meta", &json!({ "lastUpdated": self.last_updated }))?;
        m.serialize_entry("type", "collection")?;
        m.serialize_entry("entry", &Entries(self))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (i32, u8, u8) = (2026, 11, 23);

    fn body(params: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "resourceType": "Parameters", "parameter": params })).unwrap()
    }

    fn nhs() -> Value {
        json!({ "name": "patientNHSNumber", "valueIdentifier": { "system": NHS_NUMBER_SYSTEM, "value": "9000000009" } })
    }

    #[test]
    fn parses_every_area() {
        let req = parse(
            &body(json!([
                nhs(),
                { "name": "includeAllergies", "part": [{ "name": "includeResolvedAllergies", "valueBoolean": false }] },
                { "name": "includeMedication", "part": [{ "name": "medicationSearchFromDate", "valueDate": "2020-01-01" }] },
                { "name": "includeConsultations", "part": [{ "name": "includeNumberOfMostRecent", "valuePositiveInt": 3 }] },
                { "name": "includeProblems", "part": [{ "name": "filterStatus", "valueCode": "active" }] },
                { "name": "includeImmunisations" },
                { "name": "includeInvestigations" }
            ])),
            TODAY,
        )
        .unwrap();
        assert_eq!(req.nhs_number.to_string(), "9000000009");
        assert_eq!(req.areas.len(), 6);
        assert_eq!(
            req.areas[0],
            Area::Allergies {
                include_resolved: false
            }
        );
        assert_eq!(
            req.areas[2],
            Area::Consultations {
                period: None,
                most_recent: Some(3)
            }
        );
    }

    #[test]
    fn a_request_remembered_as_parameters_reads_back_the_same() {
        let req = parse(
            &body(json!([
                nhs(),
                { "name": "includeAllergies", "part": [{ "name": "includeResolvedAllergies", "valueBoolean": true }] },
                { "name": "includeMedication", "part": [{ "name": "medicationSearchFromDate", "valueDate": "2020-01" }] },
                { "name": "includeConsultations", "part": [{ "name": "consultationSearchPeriod", "valuePeriod": { "start": "2019", "end": "2021-02" } }] },
                { "name": "includeProblems", "part": [{ "name": "filterStatus", "valueCode": "inactive" }] },
                { "name": "includeImmunisations" },
                { "name": "includeInvestigations" }
            ])),
            TODAY,
        )
        .unwrap();
        let again = serde_json::to_vec(&req.to_parameters()).unwrap();
        assert_eq!(parse(&again, TODAY).unwrap(), req);
        let recent = parse(
            &body(json!([nhs(), { "name": "includeConsultations", "part": [{ "name": "includeNumberOfMostRecent", "valuePositiveInt": 2 }] }, { "name": "includeMedication" }, { "name": "includeProblems" }])),
            TODAY,
        )
        .unwrap();
        let again = serde_json::to_vec(&recent.to_parameters()).unwrap();
        assert_eq!(parse(&again, TODAY).unwrap(), recent);
    }

    #[test]
    fn refuses_invalid_combinations_naming_the_parameter() {
        let cases = [
            (
                json!([{ "name": "includeImmunisations" }]),
                "patientNHSNumber",
            ),
            (
                json!([nhs(), { "name": "includeAllergies" }]),
                "includeAllergies",
            ),
            (
                json!([nhs(), { "name": "includeConsultations", "part": [
                    { "name": "includeNumberOfMostRecent", "valuePositiveInt": 3 },
                    { "name": "consultationSearchPeriod", "valuePeriod": { "start": "2020-01-01" } }] }]),
                "includeConsultations",
            ),
            (
                json!([nhs(), { "name": "includeMedication", "part": [{ "name": "medicationSearchFromDate", "valueDate": "2099-01-01" }] }]),
                "includeMedication.medicationSearchFromDate",
            ),
            (
                json!([nhs(), { "name": "includeProblems", "part": [{ "name": "filterStatus", "valueCode": "maybe" }] }]),
                "includeProblems.filterStatus",
            ),
            (
                json!([nhs(), { "name": "includeWeather" }]),
                "includeWeather",
            ),
            (
                json!([nhs(), { "name": "includeImmunisations" }, { "name": "includeImmunisations" }]),
                "includeImmunisations",
            ),
            (
                json!([nhs(), { "name": "includeImmunisations", "part": [{ "name": "x" }] }]),
                "includeImmunisations.x",
            ),
        ];
        for (params, name) in cases {
            match parse(&body(params.clone()), TODAY) {
                Err(StructuredError::InvalidParameter { name: n, .. }) => {
                    assert_eq!(n, name, "{params}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(b"{\"resourceType\":\"Patient\"}", TODAY),
            Err(StructuredError::NotParameters(_))
        ));
        assert!(matches!(
            parse(b"not json", TODAY),
            Err(StructuredError::NotParameters(_))
        ));
        let bad_nhs = json!([{ "name": "patientNHSNumber", "valueIdentifier": { "system": NHS_NUMBER_SYSTEM, "value": "9000000008" } }]);
        assert!(matches!(
            parse(&body(bad_nhs), TODAY),
            Err(StructuredError::NhsNumber(_))
        ));
    }
}
