//! Vital signs as every adapter gives them, whatever shape the GP system holds them in:
//! a blood pressure is **one** panel Observation (SNOMED CT 75367002) with a systolic and
//! a diastolic component, whether the GP system files it as one row (Vision), one entry
//! with two readings (Microtest Evolution) or two linked entries (EMIS Web, SystmOne);
//! every vital-sign Observation carries the `vital-signs` category, derived from its
//! SNOMED CT code when the GP system stores no category; and a reading a supplier wrote
//! carries the supplier's identifier the GP system kept with it.

use std::collections::{HashMap, VecDeque};

use gp_fhir::model::{
    CodeableConcept, Coding, Identifier, Observation, ObservationComponent, Resource, SNOMED,
};

use crate::GpSystem;
use crate::terminology::{self, CodeScheme};
pub use crate::write::BLOOD_PRESSURE_PANEL;

/// SNOMED CT systolic blood pressure.
pub const SYSTOLIC: &str = "271649006";
/// SNOMED CT diastolic blood pressure.
pub const DIASTOLIC: &str = "271650006";

/// `Observation.category` code system.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// SNOMED CT concepts that are vital signs (FHIR's vital-signs profile, in SNOMED CT):
/// the blood pressure panel and its parts, pulse and heart rate, respiratory rate, body
/// temperature, oxygen saturation, body weight, height and BMI.
pub const VITAL_SIGNS: &[&str] = &[
    BLOOD_PRESSURE_PANEL,
    SYSTOLIC,
    DIASTOLIC,
    "78564009",  // pulse rate
    "364075005", // heart rate
    "86290005",  // respiratory rate
    "386725007", // body temperature
    "431314004", // oxygen saturation (SpO2)
    "27113001",  // body weight
    "50373000",  // body height
    "60621009",  // body mass index
];

/// `Observation.category` `vital-signs`.
pub fn category() -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding::new(CATEGORY_SYSTEM, "vital-signs", "Vital Signs")],
        text: None,
    }
}

/// The SNOMED CT code of a concept, if it has one.
fn snomed(cc: &CodeableConcept) -> Option<&str> {
    cc.coding
        .iter()
        .find(|c| c.system.as_deref() == Some(SNOMED))
        .and_then(|c| c.code.as_deref())
}

/// True when `o` records a vital sign.
pub fn is_vital_sign(o: &Observation) -> bool {
    snomed(&o.code).is_some_and(|c| VITAL_SIGNS.contains(&c))
}

/// The blood pressure panel of a `systolic` and a `diastolic` reading, as one
/// Observation with id `id` (the id the GP system gives the pair: the row, the entry,
/// or the systolic reading's). Everything but the value (meta, subject, encounter, time,
/// performer, body site, method, device) comes from the systolic reading; each reading's
/// interpretation becomes its component's; the identifiers of both are kept, each
/// once; the panel's code is SNOMED CT 75367002, with the GP system's own panel code
/// (Read v2 `246..`) beside it when it has one.
pub fn blood_pressure_panel(
    id: String,
    systolic: Observation,
    diastolic: Observation,
    native_panel: Option<(GpSystem, CodeScheme, &str)>,
) -> Observation {
    let term = "Blood pressure";
    let code = match native_panel {
        Some((system, scheme, code)) => {
            terminology::coded(system, scheme, code, "O/E - blood pressure reading", None)
        }
        None => terminology::snomed(BLOOD_PRESSURE_PANEL, term),
    };
    let mut identifier = systolic.identifier.clone();
    for i in diastolic.identifier {
        if !identifier.contains(&i) {
            identifier.push(i);
        }
    }
    let component = [
        (
            systolic.code.clone(),
            systolic.value_quantity.clone(),
            systolic.interpretation.clone(),
        ),
        (
            diastolic.code,
            diastolic.value_quantity,
            diastolic.interpretation,
        ),
    ]
    .into_iter()
    .map(
        |(code, value_quantity, interpretation)| ObservationComponent {
            code,
            value_quantity,
            interpretation,
        },
    )
    .collect();
    Observation {
        id,
        identifier,
        category: vec![category()],
        code,
        value_quantity: None,
        value_string: None,
        // Each reading's interpretation is its component's; an adapter that holds the
        // panel's own sets it on the panel this returns.
        interpretation: Vec::new(),
        component,
        ..systolic
    }
}

/// A diastolic reading the GP system links to the systolic reading it was taken with
/// (EMIS Web's `ParentGUID`, SystmOne's `ParentEventUID`): both are FHIR ids as mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelLink {
    pub systolic: String,
    pub diastolic: String,
}

/// Makes a mapped record's Observations the FHIR view every GP system gives:
/// each linked systolic/diastolic pair becomes one [`blood_pressure_panel`] where the
/// systolic stood (its id, so a create's id is the panel's), and every vital sign gets
/// the `vital-signs` category. A link naming entries that are not a systolic and a
/// diastolic Observation of the same confidentiality is left alone (both stay as
/// they are): it never loses a reading.
pub fn finish(resources: &mut Vec<Resource>, links: &[PanelLink]) {
    let pairs = panel_pairs(resources, links);
    if !pairs.is_empty() {
        let mut dropped = vec![false; resources.len()];
        for (s, d) in pairs {
            let empty = || Resource::Observation(Observation::default());
            let (Resource::Observation(systolic), Resource::Observation(diastolic)) = (
                std::mem::replace(&mut resources[s], empty()),
                std::mem::replace(&mut resources[d], empty()),
            ) else {
                continue;
            };
            resources[s] = Resource::Observation(blood_pressure_panel(
                systolic.id.clone(),
                systolic,
                diastolic,
                None,
            ));
            dropped[d] = true;
        }
        let mut dropped = dropped.into_iter();
        resources.retain(|_| !dropped.next().unwrap_or(false));
    }
    for r in resources.iter_mut() {
        if let Resource::Observation(o) = r {
            categorise(o);
        }
    }
}

/// The positions of the (systolic, diastolic) pairs `links` join, in link order. A link
/// takes the first reading of each id that no earlier link took, as joining them one
/// link at a time would; the readings are indexed once, so this is linear in the record.
fn panel_pairs(resources: &[Resource], links: &[PanelLink]) -> Vec<(usize, usize)> {
    if links.is_empty() {
        return Vec::new();
    }
    // Readings of each code by id, in record order; a taken reading leaves the front.
    let mut systolics: HashMap<&str, VecDeque<usize>> = HashMap::new();
    let mut diastolics: HashMap<&str, VecDeque<usize>> = HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        let Resource::Observation(o) = r else {
            continue;
        };
        if !o.component.is_empty() {
            continue;
        }
        let by_id = match snomed(&o.code) {
            Some(SYSTOLIC) => &mut systolics,
            Some(DIASTOLIC) => &mut diastolics,
            _ => continue,
        };
        by_id.entry(o.id.as_str()).or_default().push_back(i);
    }
    let mut pairs = Vec::new();
    for link in links {
        let (Some(s_queue), Some(d_queue)) = (
            systolics.get_mut(link.systolic.as_str()),
            diastolics.get_mut(link.diastolic.as_str()),
        ) else {
            continue;
        };
        let (Some(&s), Some(&d)) = (s_queue.front(), d_queue.front()) else {
            continue;
        };
        if resources[s].meta() != resources[d].meta() {
            continue;
        }
        s_queue.pop_front();
        d_queue.pop_front();
        pairs.push((s, d));
    }
    pairs
}

/// Adds the `vital-signs` category to a vital sign that lacks it.
pub fn categorise(o: &mut Observation) {
    let has = o
        .category
        .iter()
        .flat_map(|c| &c.coding)
        .any(|c| c.code.as_deref() == Some("vital-signs"));
    if is_vital_sign(o) && !has {
        o.category.push(category());
    }
}

/// The identifier a supplier gave a reading, as the GP system kept it (`system`,
/// `value`), when both are there.
pub fn supplier_identifier(system: Option<&str>, value: Option<&str>) -> Option<Identifier> {
    match (system, value) {
        (Some(s), Some(v)) if !s.is_empty() && !v.is_empty() => Some(Identifier::new(s, v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gp_fhir::model::{Meta, Quantity, Reference};

    fn reading(id: &str, code: &str, term: &str, value: f64) -> Resource {
        Resource::Observation(Observation {
            id: id.into(),
            meta: Some(Meta::uk_core("Observation")),
            identifier: vec![Identifier::new("https://emis.com/Id/event-guid", id)],
            status: "final".into(),
            code: terminology::coded(
                GpSystem::new("emis", "EMIS Web"),
                CodeScheme::ReadV2,
                code,
                term,
                None,
            ),
            subject: Reference::to("Patient", "9000000009"),
            effective_date_time: Some("2026-07-14T08:32:05+01:00".into()),
            value_quantity: Some(Quantity::ucum(value, "mm[Hg]")),
            ..Observation::default()
        })
    }

    #[test]
    fn a_linked_pair_is_one_panel_with_both_components_at_the_systolics_id() {
        let mut held = vec![
            reading("w", "22A..", "Weight", 72.0),
            reading("s", "2469.", "Systolic", 131.0),
            reading("d", "246A.", "Diastolic", 84.0),
        ];
        finish(
            &mut held,
            &[PanelLink {
                systolic: "s".into(),
                diastolic: "d".into(),
            }],
        );
        assert_eq!(held.len(), 2);
        let Resource::Observation(panel) = &held[1] else {
            panic!()
        };
        assert_eq!(panel.id, "s");
        assert_eq!(snomed(&panel.code), Some(BLOOD_PRESSURE_PANEL));
        assert_eq!(panel.value_quantity, None);
        let parts: Vec<_> = panel
            .component
            .iter()
            .map(|c| {
                (
                    snomed(&c.code).unwrap(),
                    c.value_quantity.as_ref().unwrap().value.0,
                )
            })
            .collect();
        assert_eq!(parts, [(SYSTOLIC, 131.0), (DIASTOLIC, 84.0)]);
        assert_eq!(panel.identifier.len(), 2, "both native ids are kept");
        assert_eq!(panel.category, [category()]);
        let Resource::Observation(weight) = &held[0] else {
            panic!()
        };
        assert_eq!(weight.category, [category()], "derived from the code");
    }

    #[test]
    fn a_link_that_does_not_name_a_pair_loses_nothing() {
        let mut held = vec![
            reading("s", "2469.", "Systolic", 131.0),
            reading("x", "2469.", "Systolic", 129.0),
        ];
        finish(
            &mut held,
            &[PanelLink {
                systolic: "s".into(),
                diastolic: "x".into(),
            }],
        );
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|r| match r {
            Resource::Observation(o) => o.component.is_empty(),
            _ => false,
        }));
    }
}

#[cfg(test)]
mod linear {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gp_fhir::model::{Meta, Quantity, Reference};

    /// `finish` as it was before it indexed the readings: one link at a time, each
    /// found by a scan and joined with `Vec::remove` (quadratic in the record).
    fn finish_one_link_at_a_time(resources: &mut Vec<Resource>, links: &[PanelLink]) {
        for link in links {
            let position = |id: &str, code: &str| {
                resources.iter().position(|r| match r {
                    Resource::Observation(o) => {
                        o.id == id && snomed(&o.code) == Some(code) && o.component.is_empty()
                    }
                    _ => false,
                })
            };
            let (Some(s), Some(d)) = (
                position(&link.systolic, SYSTOLIC),
                position(&link.diastolic, DIASTOLIC),
            ) else {
                continue;
            };
            if resources[s].meta() != resources[d].meta() {
                continue;
            }
            let Resource::Observation(diastolic) = resources.remove(d) else {
                continue;
            };
            let s = if d < s { s - 1 } else { s };
            let Some(Resource::Observation(systolic)) = resources.get(s).cloned() else {
                continue;
            };
            resources[s] = Resource::Observation(blood_pressure_panel(
                systolic.id.clone(),
                systolic,
                diastolic,
                None,
            ));
        }
        for r in resources.iter_mut() {
            if let Resource::Observation(o) = r {
                categorise(o);
            }
        }
    }

    fn reading(id: &str, code: &str, value: f64, restricted: bool) -> Resource {
        let mut meta = Meta::uk_core("Observation");
        if restricted {
            meta.security.push(Coding::new(
                "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "R",
                "restricted",
            ));
        }
        Resource::Observation(Observation {
            id: id.into(),
            meta: Some(meta),
            identifier: vec![Identifier::new("https://example.org/Id/event", id)],
            status: "final".into(),
            code: terminology::snomed(code, "reading"),
            subject: Reference::to("Patient", "9000000009"),
            value_quantity: Some(Quantity::ucum(value, "mm[Hg]")),
            ..Observation::default()
        })
    }

    fn link(systolic: &str, diastolic: &str) -> PanelLink {
        PanelLink {
            systolic: systolic.into(),
            diastolic: diastolic.into(),
        }
    }

    #[test]
    fn joining_by_index_gives_what_joining_one_link_at_a_time_gave() {
        let record = vec![
            reading("w", "27113001", 72.0, false),
            // Systolic first, then diastolic.
            reading("s1", SYSTOLIC, 131.0, false),
            reading("d1", DIASTOLIC, 84.0, false),
            // Diastolic first, far from its systolic.
            reading("d2", DIASTOLIC, 79.0, false),
            reading("p", "78564009", 64.0, false),
            // Metas that differ: left alone.
            reading("s3", SYSTOLIC, 140.0, true),
            reading("d3", DIASTOLIC, 90.0, false),
            reading("s2", SYSTOLIC, 122.0, false),
            // A systolic whose diastolic is missing, a diastolic whose systolic is.
            reading("s4", SYSTOLIC, 118.0, false),
            reading("d5", DIASTOLIC, 77.0, false),
            // Two readings with one id: the first is taken first.
            reading("s6", SYSTOLIC, 125.0, false),
            reading("d6", DIASTOLIC, 81.0, false),
            reading("s6", SYSTOLIC, 126.0, false),
            reading("d6", DIASTOLIC, 82.0, false),
            // Both restricted: joined.
            reading("d7", DIASTOLIC, 88.0, true),
            reading("s7", SYSTOLIC, 150.0, true),
        ];
        let links = [
            link("s1", "d1"),
            link("s2", "d2"),
            link("s3", "d3"),
            link("s4", "d4"),
            link("s5", "d5"),
            link("s6", "d6"),
            link("s6", "d6"),
            link("s6", "d6"),
            link("s7", "d7"),
            // Already joined: a second link to either half does nothing.
            link("s1", "d1"),
            link("s1", "d3"),
            // Halves named the wrong way round.
            link("d3", "s3"),
            link("p", "w"),
        ];
        let mut by_index = record.clone();
        finish(&mut by_index, &links);
        let mut one_at_a_time = record.clone();
        finish_one_link_at_a_time(&mut one_at_a_time, &links);
        assert_eq!(by_index, one_at_a_time);
        let panels = by_index
            .iter()
            .filter(|r| matches!(r, Resource::Observation(o) if !o.component.is_empty()))
            .count();
        assert_eq!(panels, 5, "s1, s2, both s6 and s7 are panels");
        assert_eq!(by_index.len(), record.len() - panels);

        for shift in 1..record.len() {
            let mut rotated = record.clone();
            rotated.rotate_left(shift);
            let mut by_index = rotated.clone();
            finish(&mut by_index, &links);
            let mut one_at_a_time = rotated;
            finish_one_link_at_a_time(&mut one_at_a_time, &links);
            assert_eq!(by_index, one_at_a_time, "rotated by {shift}");
        }
    }
}
