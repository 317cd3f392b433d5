//! Which patient a record entry belongs to, for reads by id. A GP system's entry ids
//! (EMIS GUIDs, SystmOne event ids, …) do not say whose record holds them, so the gateway
//! remembers, for a day, the patient of every entry it answers: in a search, the
//! structured record or a create. A read by id finds the patient here, then reads the
//! entry through the same release policy as the search would; an id never answered is
//! not found.

use std::time::Duration;

use gp_adapter::ClinicalType;
use gp_fhir::NhsNumber;
use gp_fhir::model::Resource;

/// How long an answered entry can be read by its id.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Entries answered, by type and id, with their patient.
pub struct EntryIndex {
    patients: moka::future::Cache<(ClinicalType, String), NhsNumber>,
}

impl EntryIndex {
    /// An index of at most `max_entries` entries.
    pub fn new(max_entries: u64) -> Self {
        Self {
            patients: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(REMEMBERED_FOR)
                .build(),
        }
    }

    /// Remembers that `nhs`'s record holds each of `entries` (see
    /// [`EntryIndex::unknown`]).
    pub async fn remember(&self, nhs: NhsNumber, entries: Vec<(ClinicalType, String)>) {
        for key in entries {
            self.patients.insert(key, nhs).await;
        }
    }

    /// The entries among `resources` not yet remembered, with the entries each refers
    /// to (an Observation's `encounter`: the same record holds it). Repeated searches
    /// answer the same entries: for those this is a lookup each, no more.
    pub fn unknown<'a>(
        &self,
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Vec<(ClinicalType, String)> {
        let mut out = Vec::new();
        for r in resources {
            let Some(t) = ClinicalType::parse(r.resource_type()) else {
                continue;
            };
            let key = (t, r.id().to_owned());
            if self.patients.contains_key(&key) {
                continue;
            }
            out.push(key);
            if let Ok(json) = serde_json::to_value(r) {
                referenced(&json, &mut out);
            }
        }
        out
    }

    /// The patient whose record holds entry `id` of type `t`, if it was answered.
    pub async fn patient_of(&self, t: ClinicalType, id: &str) -> Option<NhsNumber> {
        self.patients.get(&(t, id.to_owned())).await
    }
}

/// Every `Type/id` reference to a record entry within `json`.
fn referenced(json: &serde_json::Value, out: &mut Vec<(ClinicalType, String)>) {
    match json {
        serde_json::Value::Object(members) => {
            if let Some(serde_json::Value::String(reference)) = members.get("reference")
                && let Some((t, id)) = reference.split_once('/')
                && let Some(t) = ClinicalType::parse(t)
            {
                out.push((t, id.to_owned()));
            }
            members.values().for_each(|v| referenced(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn observation(id: &str, encounter: &str) -> Resource {
        serde_json::from_value(serde_json::json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "code": { "text": "Body weight" },
            "subject": { "reference": "Patient/9000000009" },
            "encounter": { "reference": format!("Encounter/{encounter}") },
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn answered_entries_and_the_entries_they_refer_to_are_found() {
        let index = EntryIndex::new(100);
        let nhs = NhsNumber::parse("9000000009").unwrap();
        let page = [observation("obs-1", "enc-1")];
        let unknown = index.unknown(&page);
        assert_eq!(
            unknown,
            [
                (ClinicalType::Observation, "obs-1".to_owned()),
                (ClinicalType::Encounter, "enc-1".to_owned())
            ],
            "the entry and its encounter, not the patient"
        );
        index.remember(nhs, unknown).await;
        assert_eq!(
            index.patient_of(ClinicalType::Observation, "obs-1").await,
            Some(nhs)
        );
        assert_eq!(
            index.patient_of(ClinicalType::Encounter, "enc-1").await,
            Some(nhs)
        );
        assert_eq!(
            index.patient_of(ClinicalType::Condition, "obs-1").await,
            None
        );
        assert_eq!(
            index.patient_of(ClinicalType::Observation, "obs-2").await,
            None
        );
        assert!(
            index.unknown(&page).is_empty(),
            "a repeated answer is only looked up"
        );
    }
}
