//! Subsetted resources (`_summary=true|data`, `_elements=…`): which top-level elements of
//! each served type R4 marks summary or mandatory, and the pruning itself. A subsetted
//! resource carries the `SUBSETTED` tag, as FHIR asks, so no client stores it as whole.

use serde_json::{Map, Value, json};

/// The code system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// One top-level element of a resource type: its name (a choice element by its stem,
/// `effective` for `effective[x]`), whether R4 marks it summary (Σ), and whether it is
/// mandatory (min 1; returned whatever is asked, as FHIR says servers should).
struct Element {
    name: &'static str,
    choice: bool,
    summary: bool,
    mandatory: bool,
}

const fn el(name: &'static str) -> Element {
    Element {
        name,
        choice: false,
        summary: false,
        mandatory: false,
    }
}

impl Element {
    const fn choice(mut self) -> Self {
        self.choice = true;
        self
    }
    const fn summary(mut self) -> Self {
        self.summary = true;
        self
    }
    const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self.summary = true;
        self
    }

    /// True when the JSON key `key` is this element (`effectiveDateTime` is `effective[x]`).
    fn is(&self, key: &str) -> bool {
        key == self.name
            || (self.choice
                && key
                    .strip_prefix(self.name)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())))
    }
}

/// Elements every resource has (Resource and DomainResource); `resourceType`, `id` and
/// `meta` are always returned (fhirpy's `elements()` names `resourceType` too), `text` is
/// summary only in `_summary=text`.
const BASE: &[Element] = &[
    el("resourceType").mandatory(),
    el("id").mandatory(),
    el("meta").mandatory(),
    el("implicitRules").summary(),
    el("language"),
    el("text"),
    el("contained"),
    el("extension"),
    el("modifierExtension"),
];

// R4's top-level elements of each type the gateway searches, as the specification's
// StructureDefinitions mark them.
const PATIENT: &[Element] = &[
    el("identifier").summary(),
    el("active").summary(),
    el("name").summary(),
    el("telecom").summary(),
    el("gender").summary(),
    el("birthDate").summary(),
    el("deceased").choice().summary(),
    el("address").summary(),
    el("maritalStatus"),
    el("multipleBirth").choice(),
    el("photo"),
    el("contact"),
    el("communication"),
    el("generalPractitioner"),
    el("managingOrganization").summary(),
    el("link").summary(),
];
const ALLERGY_INTOLERANCE: &[Element] = &[
    el("identifier").summary(),
    el("clinicalStatus").summary(),
    el("verificationStatus").summary(),
    el("type").summary(),
    el("category").summary(),
    el("criticality").summary(),
    el("code").summary(),
    el("patient").mandatory(),
    el("encounter"),
    el("onset").choice(),
    el("recordedDate"),
    el("recorder"),
    el("asserter").summary(),
    el("lastOccurrence"),
    el("note"),
    el("reaction"),
];
const MEDICATION_STATEMENT: &[Element] = &[
    el("identifier").summary(),
    el("basedOn").summary(),
    el("partOf").summary(),
    el("status").mandatory(),
    el("statusReason"),
    el("category").summary(),
    el("medication").choice().mandatory(),
    el("subject").mandatory(),
    el("context").summary(),
    el("effective").choice().summary(),
    el("dateAsserted").summary(),
    el("informationSource"),
    el("derivedFrom"),
    el("reasonCode"),
    el("reasonReference"),
    el("note"),
    el("dosage"),
];
const CONDITION: &[Element] = &[
    el("identifier").summary(),
    el("clinicalStatus").summary(),
    el("verificationStatus").summary(),
    el("category"),
    el("severity"),
    el("code").summary(),
    el("bodySite").summary(),
    el("subject").mandatory(),
    el("encounter").summary(),
    el("onset").choice().summary(),
    el("abatement").choice(),
    el("recordedDate").summary(),
    el("recorder").summary(),
    el("asserter").summary(),
    el("stage"),
    el("evidence"),
    el("note"),
];
const OBSERVATION: &[Element] = &[
    el("identifier").summary(),
    el("basedOn").summary(),
    el("partOf").summary(),
    el("status").mandatory(),
    el("category"),
    el("code").mandatory(),
    el("subject").summary(),
    el("focus").summary(),
    el("encounter").summary(),
    el("effective").choice().summary(),
    el("issued").summary(),
    el("performer").summary(),
    el("value").choice().summary(),
    el("dataAbsentReason"),
    el("interpretation"),
    el("note"),
    el("bodySite"),
    el("method"),
    el("specimen"),
    el("device"),
    el("referenceRange"),
    el("hasMember").summary(),
    el("derivedFrom").summary(),
    el("component").summary(),
];
const IMMUNIZATION: &[Element] = &[
    el("identifier"),
    el("status").mandatory(),
    el("statusReason"),
    el("vaccineCode").mandatory(),
    el("patient").mandatory(),
    el("encounter"),
    el("occurrence").choice().mandatory(),
    el("recorded"),
    el("primarySource").summary(),
    el("reportOrigin"),
    el("location").summary(),
    el("manufacturer"),
    el("lotNumber"),
    el("expirationDate"),
    el("site"),
    el("route"),
    el("doseQuantity"),
    el("performer").summary(),
    el("note").summary(),
    el("reasonCode"),
    el("reasonReference"),
    el("isSubpotent").summary(),
    el("subpotentReason"),
    el("education"),
    el("programEligibility"),
    el("fundingSource"),
    el("reaction"),
    el("protocolApplied"),
];
const ENCOUNTER: &[Element] = &[
    el("identifier").summary(),
    el("status").mandatory(),
    el("statusHistory"),
    el("class").mandatory(),
    el("classHistory"),
    el("type").summary(),
    el("serviceType").summary(),
    el("priority"),
    el("subject").summary(),
    el("episodeOfCare").summary(),
    el("basedOn"),
    el("participant").summary(),
    el("appointment").summary(),
    el("period"),
    el("length"),
    el("reasonCode").summary(),
    el("reasonReference").summary(),
    el("diagnosis").summary(),
    el("account"),
    el("hospitalization"),
    el("location"),
    el("serviceProvider"),
    el("partOf"),
];

/// The type's own elements (not the base ones), for the types the gateway searches.
fn elements(resource_type: &str) -> Option<&'static [Element]> {
    Some(match resource_type {
        "Patient" => PATIENT,
        "AllergyIntolerance" => ALLERGY_INTOLERANCE,
        "MedicationStatement" => MEDICATION_STATEMENT,
        "Condition" => CONDITION,
        "Observation" => OBSERVATION,
        "Immunization" => IMMUNIZATION,
        "Encounter" => ENCOUNTER,
        _ => return None,
    })
}

fn element(resource_type: &str, key: &str) -> Option<&'static Element> {
    BASE.iter()
        .chain(elements(resource_type).unwrap_or_default())
        .find(|e| e.is(key))
}

/// True when `name` is a top-level element of `resource_type` in R4 (`effective`,
/// `effectiveDateTime` or `effective[x]` for a choice).
pub fn is_element(resource_type: &str, name: &str) -> bool {
    match name.strip_suffix("[x]") {
        Some(stem) => element(resource_type, stem).is_some_and(|e| e.choice && e.name == stem),
        None => element(resource_type, name).is_some(),
    }
}

/// Which part of each resource a search returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Subset {
    /// The whole resource.
    #[default]
    Full,
    /// `_summary=true`: the elements R4 marks summary.
    Summary,
    /// `_summary=data`: all but the narrative (`text`).
    Data,
    /// `_elements=…`: these top-level elements, with `id`, `meta` and the mandatory ones.
    Elements(Vec<String>),
}

impl Subset {
    /// Prunes `resource` (FHIR JSON of a type [`is_element`] knows) to this subset and
    /// tags it `SUBSETTED`; the whole resource is left untouched.
    pub fn apply(&self, resource: &mut Value) {
        if *self == Self::Full {
            return;
        }
        let Some(fields) = resource.as_object_mut() else {
            return;
        };
        let resource_type = fields
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        fields.retain(|key, _| {
            if key == "resourceType" {
                return true;
            }
            let known = element(&resource_type, key);
            match self {
                Self::Full => true,
                Self::Summary => known.is_some_and(|e| e.summary),
                Self::Data => key != "text",
                Self::Elements(names) => {
                    known.is_some_and(|e| e.mandatory)
                        || names.iter().any(|n| {
                            let stem = n.strip_suffix("[x]").unwrap_or(n);
                            key == stem || known.is_some_and(|e| e.name == stem)
                        })
                }
            }
        });
        let meta = fields
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            let tags = meta.entry("tag").or_insert_with(|| json!([]));
            if let Some(tags) = tags.as_array_mut() {
                tags.push(json!({
                    "system": SUBSETTED_SYSTEM,
                    "code": "SUBSETTED",
                    "display": "Resource encoded in summary mode"
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation() -> Value {
        json!({
            "resourceType": "Observation", "id": "o1",
            "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"] },
            "status": "final",
            "category": [{ "text": "vital signs" }],
            "code": { "text": "Body weight" },
            "subject": { "reference": "Patient/9690937278" },
            "effectiveDateTime": "2024-01-02T10:00:00+00:00",
            "valueQuantity": { "value": 72.5 },
            "note": [{ "text": "after breakfast" }],
            "text": { "status": "generated", "div": "<div/>" }
        })
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn summary_keeps_the_summary_elements_and_tags_the_resource() {
        let mut v = observation();
        Subset::Summary.apply(&mut v);
        assert_eq!(
            keys(&v),
            [
                "code",
                "effectiveDateTime",
                "id",
                "meta",
                "resourceType",
                "status",
                "subject",
                "valueQuantity"
            ]
        );
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
        assert_eq!(v["meta"]["tag"][0]["system"], SUBSETTED_SYSTEM);
        assert!(v["meta"]["profile"].is_array(), "meta is kept whole");
    }

    #[test]
    fn data_drops_the_narrative_and_elements_keep_what_was_asked_plus_the_mandatory() {
        let mut v = observation();
        Subset::Data.apply(&mut v);
        assert!(v.get("text").is_none() && v.get("note").is_some());
        let mut v = observation();
        Subset::Elements(vec!["effective".into(), "note".into()]).apply(&mut v);
        assert_eq!(
            keys(&v),
            [
                "code",
                "effectiveDateTime",
                "id",
                "meta",
                "note",
                "resourceType",
                "status"
            ],
            "status and code are mandatory in R4"
        );
        let mut v = observation();
        Subset::Elements(vec!["valueQuantity".into()]).apply(&mut v);
        assert!(v.get("valueQuantity").is_some() && v.get("subject").is_none());
        let mut whole = observation();
        Subset::Full.apply(&mut whole);
        assert_eq!(whole, observation());
    }

    #[test]
    fn element_names_are_checked_against_the_type() {
        assert!(is_element("Observation", "effective"));
        assert!(is_element("Observation", "effectiveDateTime"));
        assert!(is_element("Observation", "effective[x]"));
        assert!(is_element("Patient", "birthDate"));
        assert!(is_element("Patient", "id"));
        assert!(is_element("Observation", "resourceType"), "fhirpy sends it");
        assert!(!is_element("Patient", "birthdate"));
        assert!(!is_element("Condition", "status"));
        assert!(!is_element("Observation", "code[x]"));
        assert!(!is_element("Observation", "statusReason"));
        assert!(!is_element("Practitioner", "name"));
    }
}
