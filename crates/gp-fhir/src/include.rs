//! `_include` and `_revinclude`: the R4 reference search parameters whose references
//! the gateway emits, in one table the parser, the gateway's resolver and the
//! CapabilityStatement all read, so they cannot disagree.

use crate::model::{Reference, Resource};
use crate::text::shown;

/// An `_include` / `_revinclude` the gateway cannot serve, naming the parameter and its
/// value (the search parser reports it as [`crate::search::SearchError::Unsupported`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub value: String,
    pub why: String,
}

/// One R4 reference search parameter the gateway can follow: `source:param` refers
/// through `path` to resources of `targets` (those of R4's targets the GP systems'
/// answers carry).
#[derive(Debug, PartialEq, Eq)]
pub struct IncludeDef {
    pub source: &'static str,
    pub param: &'static str,
    /// The R4 search parameter's expression, as the CapabilityStatement documents it.
    pub path: &'static str,
    pub targets: &'static [&'static str],
}

const fn row(
    source: &'static str,
    param: &'static str,
    path: &'static str,
    targets: &'static [&'static str],
) -> IncludeDef {
    IncludeDef {
        source,
        param,
        path,
        targets,
    }
}

const PATIENT: &[&str] = &["Patient"];
const ENCOUNTER: &[&str] = &["Encounter"];
const PRACTITIONER: &[&str] = &["Practitioner"];
const ORGANIZATION: &[&str] = &["Organization"];
const SCHEDULE: &[&str] = &["Schedule"];
const SCHEDULE_ACTORS: &[&str] = &["Practitioner", "PractitionerRole", "Location"];

/// Every `_include` / `_revinclude` the gateway serves (names and paths as R4 defines
/// them; targets as the adapters emit them).
pub const INCLUDES: &[IncludeDef] = &[
    row(
        "Patient",
        "general-practitioner",
        "Patient.generalPractitioner",
        PRACTITIONER,
    ),
    row(
        "Patient",
        "organization",
        "Patient.managingOrganization",
        ORGANIZATION,
    ),
    row(
        "AllergyIntolerance",
        "patient",
        "AllergyIntolerance.patient",
        PATIENT,
    ),
    row(
        "AllergyIntolerance",
        "recorder",
        "AllergyIntolerance.recorder",
        PRACTITIONER,
    ),
    row(
        "MedicationStatement",
        "patient",
        "MedicationStatement.subject",
        PATIENT,
    ),
    row(
        "MedicationStatement",
        "subject",
        "MedicationStatement.subject",
        PATIENT,
    ),
    row(
        "MedicationStatement",
        "context",
        "MedicationStatement.context",
        ENCOUNTER,
    ),
    row(
        "MedicationStatement",
        "source",
        "MedicationStatement.informationSource",
        PRACTITIONER,
    ),
    row("Condition", "patient", "Condition.subject", PATIENT),
    row("Condition", "subject", "Condition.subject", PATIENT),
    row("Condition", "encounter", "Condition.encounter", ENCOUNTER),
    row("Observation", "patient", "Observation.subject", PATIENT),
    row("Observation", "subject", "Observation.subject", PATIENT),
    row(
        "Observation",
        "encounter",
        "Observation.encounter",
        ENCOUNTER,
    ),
    row(
        "Observation",
        "performer",
        "Observation.performer",
        PRACTITIONER,
    ),
    row("Immunization", "patient", "Immunization.patient", PATIENT),
    row(
        "Immunization",
        "performer",
        "Immunization.performer.actor",
        PRACTITIONER,
    ),
    row("Encounter", "patient", "Encounter.subject", PATIENT),
    row("Encounter", "subject", "Encounter.subject", PATIENT),
    row(
        "Encounter",
        "participant",
        "Encounter.participant.individual",
        PRACTITIONER,
    ),
    row(
        "Encounter",
        "practitioner",
        "Encounter.participant.individual",
        PRACTITIONER,
    ),
    row(
        "Encounter",
        "service-provider",
        "Encounter.serviceProvider",
        ORGANIZATION,
    ),
    // Free-slot searches: a slot's session, the session's clinician, role and site, and
    // the site's practice.
    row("Slot", "schedule", "Slot.schedule", SCHEDULE),
    row("Schedule", "actor", "Schedule.actor", SCHEDULE_ACTORS),
    row(
        "Location",
        "organization",
        "Location.managingOrganization",
        ORGANIZATION,
    ),
];

/// R4 reference parameters of the searched types whose element no GP system fills.
const NOT_EMITTED: &[(&str, &str, &str)] = &[
    (
        "Condition",
        "asserter",
        "the GP systems record who entered a problem (Condition.recorder, which R4 does not search), never an asserter",
    ),
    (
        "AllergyIntolerance",
        "asserter",
        "the GP systems record who entered an allergy (AllergyIntolerance:recorder), never an asserter",
    ),
];

impl IncludeDef {
    /// `Type:param`, as a request names it.
    pub fn name(&self) -> String {
        format!("{}:{}", self.source, self.param)
    }

    /// The references `entry` (of type `source`) makes through this parameter.
    pub fn references<'a>(&self, entry: &'a Resource) -> Vec<&'a str> {
        let refs: Vec<&Reference> = match (entry, self.param) {
            (Resource::Patient(r), "general-practitioner") => {
                r.general_practitioner.iter().collect()
            }
            (Resource::Patient(r), "organization") => r.managing_organization.iter().collect(),
            (Resource::AllergyIntolerance(r), "patient") => vec![&r.patient],
            (Resource::AllergyIntolerance(r), "recorder") => r.recorder.iter().collect(),
            (Resource::MedicationStatement(r), "patient" | "subject") => vec![&r.subject],
            (Resource::MedicationStatement(r), "context") => r.context.iter().collect(),
            (Resource::MedicationStatement(r), "source") => r.information_source.iter().collect(),
            (Resource::Condition(r), "patient" | "subject") => vec![&r.subject],
            (Resource::Condition(r), "encounter") => r.encounter.iter().collect(),
            (Resource::Observation(r), "patient" | "subject") => vec![&r.subject],
            (Resource::Observation(r), "encounter") => r.encounter.iter().collect(),
            (Resource::Observation(r), "performer") => r.performer.iter().collect(),
            (Resource::Immunization(r), "patient") => vec![&r.patient],
            (Resource::Immunization(r), "performer") => {
                r.performer.iter().map(|p| &p.actor).collect()
            }
            (Resource::Encounter(r), "patient" | "subject") => vec![&r.subject],
            (Resource::Encounter(r), "participant" | "practitioner") => r
                .participant
                .iter()
                .filter_map(|p| p.individual.as_ref())
                .collect(),
            (Resource::Encounter(r), "service-provider") => r.service_provider.iter().collect(),
            (Resource::Slot(r), "schedule") => vec![&r.schedule],
            (Resource::Schedule(r), "actor") => r.actor.iter().collect(),
            (Resource::Location(r), "organization") => r.managing_organization.iter().collect(),
            _ => Vec::new(),
        };
        refs.into_iter()
            .filter_map(|r| r.reference.as_deref())
            .filter(|r| self.targets.iter().any(|t| refers_to(r, t)))
            .collect()
    }
}

/// True when `reference` (`Type/id`) is to a resource of `resource_type`.
fn refers_to(reference: &str, resource_type: &str) -> bool {
    reference
        .strip_prefix(resource_type)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The `_include` values a search of `resource_type` takes.
pub fn includes_of(resource_type: &str) -> impl Iterator<Item = &'static IncludeDef> + '_ {
    INCLUDES.iter().filter(move |d| d.source == resource_type)
}

/// The `_revinclude` values a search of `resource_type` takes.
pub fn revincludes_of(resource_type: &str) -> impl Iterator<Item = &'static IncludeDef> + '_ {
    INCLUDES
        .iter()
        .filter(move |d| d.targets.contains(&resource_type))
}

/// One `_include` or `_revinclude` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub def: &'static IncludeDef,
    /// The type a forward include resolves (`Type:param:Target`, or the only target).
    pub target: &'static str,
}

impl Include {
    /// The references `entry` makes through this parameter to the target type.
    pub fn references<'a>(&self, entry: &'a Resource) -> Vec<&'a str> {
        self.def
            .references(entry)
            .into_iter()
            .filter(|r| refers_to(r, self.target))
            .collect()
    }
}

/// What a search asks to include besides its matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Includes {
    /// `_include`: what the matches refer to.
    pub forward: Vec<Include>,
    /// `_revinclude`: the patient's entries that refer to the matches.
    pub reverse: Vec<Include>,
}

impl Includes {
    /// Nothing to include.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty() && self.reverse.is_empty()
    }

    /// The resource types whose read the includes need: the target of each `_include`
    /// and the source of each `_revinclude`.
    pub fn types_read(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let types = self
            .forward
            .iter()
            .map(|i| i.target)
            .chain(self.reverse.iter().map(|i| i.def.source));
        for t in types {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// Reads one `_include` / `_revinclude` parameter (`key` with any modifier) of a
    /// search of `searched`.
    pub fn add(&mut self, searched: &str, key: &str, value: &str) -> Result<(), Refused> {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key, None),
        };
        let reverse = name == "_revinclude";
        let refuse = |why: String| Refused {
            name: key.chars().filter(|c| !c.is_control()).take(64).collect(),
            value: shown(value),
            why,
        };
        if let Some(m) = modifier {
            return Err(refuse(format!(
                "the ':{m}' modifier is not supported: includes are followed one level, from the matches only"
            )));
        }
        let offered = || {
            let names: Vec<String> = if reverse {
                revincludes_of(searched).map(IncludeDef::name).collect()
            } else {
                includes_of(searched).map(IncludeDef::name).collect()
            };
            if names.is_empty() {
                format!("a search of {searched} takes none")
            } else {
                format!("a search of {searched} takes {}", names.join(", "))
            }
        };
        if value == "*" || value.ends_with(":*") {
            return Err(refuse(format!(
                "wildcards are not supported: name each reference parameter; {}",
                offered()
            )));
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (source, param, target) = match parts.as_slice() {
            [s, p] => (*s, *p, None),
            [s, p, t] => (*s, *p, Some(*t)),
            _ => {
                return Err(refuse(format!(
                    "expected Type:param or Type:param:TargetType; {}",
                    offered()
                )));
            }
        };
        let Some(def) = INCLUDES
            .iter()
            .find(|d| d.source == source && d.param == param)
        else {
            let why = NOT_EMITTED
                .iter()
                .find(|(s, p, _)| *s == source && *p == param)
                .map(|(_, _, why)| (*why).to_owned())
                .unwrap_or_else(|| {
                    "not a reference search parameter whose references the gateway emits".into()
                });
            return Err(refuse(format!("{why}; {}", offered())));
        };
        // A reverse include resolves to the searched type; a forward one to the type
        // named, or the parameter's only target.
        let wanted = target.unwrap_or(if reverse { searched } else { def.targets[0] });
        let Some(target) = def.targets.iter().copied().find(|t| *t == wanted) else {
            return Err(refuse(if reverse {
                format!("{} does not refer to {searched}; {}", def.name(), offered())
            } else {
                format!("{} refers to {} only", def.name(), def.targets.join(", "))
            }));
        };
        if reverse {
            if target != searched {
                return Err(refuse(format!(
                    "{} does not refer to {searched}; {}",
                    def.name(),
                    offered()
                )));
            }
            if !self.reverse.iter().any(|i| i.def == def) {
                self.reverse.push(Include { def, target });
            }
        } else {
            if source != searched {
                return Err(refuse(format!(
                    "an _include starts from the searched type ({searched}): to include what {source} refers to, search {source}"
                )));
            }
            if !self
                .forward
                .iter()
                .any(|i| i.def == def && i.target == target)
            {
                self.forward.push(Include { def, target });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{Encounter, EncounterParticipant, Observation};

    fn includes(searched: &str, pairs: &[(&str, &str)]) -> Result<Includes, Refused> {
        let mut out = Includes::default();
        for (k, v) in pairs {
            out.add(searched, k, v)?;
        }
        Ok(out)
    }

    #[test]
    fn every_row_is_a_searchable_type_and_each_type_has_its_reference_to_the_patient() {
        for d in INCLUDES {
            assert!(!d.targets.is_empty(), "{}", d.name());
            assert!(
                d.path.starts_with(&format!("{}.", d.source)),
                "{}: {}",
                d.name(),
                d.path
            );
        }
        for t in crate::search::CLINICAL_TYPES {
            assert!(includes_of(t).any(|d| d.param == "patient"), "{t}:patient");
        }
        let rev: Vec<String> = revincludes_of("Encounter").map(IncludeDef::name).collect();
        assert_eq!(
            rev,
            [
                "MedicationStatement:context",
                "Condition:encounter",
                "Observation:encounter"
            ]
        );
    }

    #[test]
    fn references_follow_the_named_element_to_the_target_type_only() {
        let obs = Resource::Observation(Observation {
            id: "o1".into(),
            subject: Reference::to("Patient", "9690937278"),
            encounter: Some(Reference::to("Encounter", "e1")),
            performer: vec![Reference::to("Practitioner", "p1")],
            ..Observation::default()
        });
        let find = |p: &str| {
            INCLUDES
                .iter()
                .find(|d| d.source == "Observation" && d.param == p)
                .unwrap()
        };
        assert_eq!(find("encounter").references(&obs), ["Encounter/e1"]);
        assert_eq!(find("performer").references(&obs), ["Practitioner/p1"]);
        assert_eq!(find("patient").references(&obs), ["Patient/9690937278"]);
        let enc = Resource::Encounter(Encounter {
            id: "e1".into(),
            participant: vec![EncounterParticipant {
                individual: Some(Reference::to("Practitioner", "p2")),
            }],
            service_provider: Some(Reference::to("Organization", "A12345")),
            ..Encounter::default()
        });
        let i = includes(
            "Encounter",
            &[("_include", "Encounter:participant:Practitioner")],
        )
        .unwrap();
        assert_eq!(i.forward[0].references(&enc), ["Practitioner/p2"]);
        let i = includes("Encounter", &[("_include", "Encounter:service-provider")]).unwrap();
        assert_eq!(i.forward[0].references(&enc), ["Organization/A12345"]);
        assert_eq!(i.types_read(), ["Organization"]);
    }

    #[test]
    fn refusals_name_the_value_and_say_what_is_served() {
        for (searched, key, value, says) in [
            ("Observation", "_include", "*", "wildcards"),
            ("Observation", "_include", "Observation:*", "wildcards"),
            (
                "Observation",
                "_include:iterate",
                "Observation:encounter",
                ":iterate",
            ),
            (
                "Observation",
                "_include:recurse",
                "Observation:encounter",
                ":recurse",
            ),
            (
                "Observation",
                "_include",
                "Observation:code",
                "Observation:encounter",
            ),
            (
                "Observation",
                "_include",
                "Encounter:participant",
                "search Encounter",
            ),
            (
                "Observation",
                "_include",
                "Observation:performer:Organization",
                "Practitioner only",
            ),
            (
                "Condition",
                "_include",
                "Condition:asserter",
                "Condition.recorder",
            ),
            ("Observation", "_include", "Observation", "Type:param"),
            (
                "Observation",
                "_revinclude",
                "Condition:encounter",
                "does not refer to Observation",
            ),
            (
                "Encounter",
                "_revinclude",
                "Observation:patient",
                "does not refer to Encounter",
            ),
            (
                "Observation",
                "_revinclude",
                "Observation:encounter",
                "takes none",
            ),
        ] {
            let e = includes(searched, &[(key, value)]).unwrap_err();
            assert_eq!((e.name.as_str(), e.value.as_str()), (key, value));
            assert!(e.why.contains(says), "{key}={value}: {}", e.why);
        }
    }

    #[test]
    fn reverse_includes_name_what_refers_to_the_searched_type() {
        let i = includes(
            "Patient",
            &[
                ("_revinclude", "Observation:patient"),
                ("_revinclude", "Encounter:subject"),
                ("_include", "Patient:general-practitioner"),
            ],
        )
        .unwrap();
        assert_eq!(i.reverse.len(), 2);
        assert_eq!(i.types_read(), ["Practitioner", "Observation", "Encounter"]);
        assert!(
            includes(
                "Encounter",
                &[("_revinclude", "Observation:encounter:Encounter")]
            )
            .is_ok()
        );
    }
}
