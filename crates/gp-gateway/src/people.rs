//! Practice staff the gateway's answers name: `Practitioner/{id}` reads, the people a
//! structured record puts in its Bundle, and the names on references (`display`). A GP
//! system is asked for each person at most once every few minutes (the staff cache);
//! which practice a person works at is what the entry index remembered when an answer
//! referred to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gp_adapter::{Adapter, AdapterError, CallContext, PatientRecord, PractitionerRequest};
use gp_fhir::OdsCode;
use gp_fhir::model::{HumanName, Patient, Practitioner, Reference, Resource};

/// How long a person read from a GP system is reused: staff details rarely change.
const STAFF_TTL: Duration = Duration::from_secs(5 * 60);
/// Most people kept.
const STAFF_KEPT: u64 = 10_000;

/// People read from the GP systems, by practice and id (`None`: the practice has no
/// such person).
pub struct StaffCache {
    people: moka::future::Cache<(OdsCode, String), Option<Arc<Practitioner>>>,
}

impl Default for StaffCache {
    fn default() -> Self {
        Self {
            people: moka::future::Cache::builder()
                .max_capacity(STAFF_KEPT)
                .time_to_live(STAFF_TTL)
                .build(),
        }
    }
}

impl StaffCache {
    /// Person `id` of `practice`; concurrent misses share one GP system call, and
    /// errors are never cached.
    pub async fn read(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> Result<Option<Arc<Practitioner>>, AdapterError> {
        let load = async {
            let req = PractitionerRequest {
                practice: practice.clone(),
                id: id.to_owned(),
                context: ctx.clone(),
            };
            adapter
                .read_practitioner(&req)
                .await
                .map(|p| p.map(Arc::new))
        };
        self.people
            .try_get_with((practice.clone(), id.to_owned()), load)
            .await
            .map_err(|e| (*e).clone())
    }

    /// The people `resources` refer to, as far as the GP system answers: a person it
    /// cannot answer now (unavailable, not supported) is left out, and the references
    /// to them stay as they are, without a name.
    pub async fn referred(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        resources: &[&Resource],
        ctx: &CallContext,
    ) -> Vec<Arc<Practitioner>> {
        self.referred_all(adapter, practice, resources, ctx).await.0
    }

    /// Like [`StaffCache::referred`], and whether the GP system answered for every
    /// person (found or known to be absent): `false` when a read failed, so names
    /// made now may be missing one that a later answer would carry.
    pub async fn referred_all(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        resources: &[&Resource],
        ctx: &CallContext,
    ) -> (Vec<Arc<Practitioner>>, bool) {
        let mut ids: Vec<&str> = Vec::new();
        for r in resources {
            for reference in r.references() {
                if let Some(id) = reference.strip_prefix("Practitioner/")
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
        }
        let reads = ids.iter().map(|id| self.read(adapter, practice, id, ctx));
        let mut out = Vec::with_capacity(ids.len());
        let mut answered = true;
        for (id, read) in ids.iter().zip(futures_util::future::join_all(reads).await) {
            match read {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {
                    // Answered from the cache for minutes: one line per request, not per
                    // native call, so not a warning.
                    tracing::debug!(%practice, practitioner = %id, "a record names a person its practice does not hold")
                }
                Err(e) => {
                    answered = false;
                    tracing::debug!(%practice, practitioner = %id, error = %e, "person not read: the reference stays unnamed")
                }
            }
        }
        (out, answered)
    }
}

/// A person's name as a reference's `display`: "Dr Amir Khan".
pub fn display_name(names: &[HumanName]) -> Option<String> {
    let n = names
        .iter()
        .find(|n| n.use_.as_deref() == Some("official"))
        .or(names.first())?;
    let parts: Vec<&str> = n
        .prefix
        .iter()
        .chain(&n.given)
        .map(String::as_str)
        .chain(n.family.as_deref())
        .filter(|p| !p.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Names on references: `display` for every reference to one of `names` (`Type/id` →
/// name) that has none yet.
pub fn name_references(resource: &mut Resource, names: &HashMap<String, String>) {
    for reference in resource.references_mut() {
        name_reference(reference, names);
    }
}

fn name_reference(reference: &mut Reference, names: &HashMap<String, String>) {
    if reference.display.is_none()
        && let Some(name) = reference.reference.as_deref().and_then(|r| names.get(r))
    {
        reference.display = Some(name.clone());
    }
}

/// `Practitioner/{id}` → name, for `people`.
pub fn names_of<'a>(people: impl IntoIterator<Item = &'a Practitioner>) -> HashMap<String, String> {
    people
        .into_iter()
        .filter_map(|p| Some((format!("Practitioner/{}", p.id), display_name(&p.name)?)))
        .collect()
}

/// The record's Patient with names on its references: the usual GP's and the
/// practice's, as the GP system holds them.
pub fn named_patient(record: &PatientRecord) -> Patient {
    let mut names = names_of(record.practitioner.iter());
    if let Some(org) = &record.organization
        && let Some(name) = org.name.as_ref().filter(|n| !n.trim().is_empty())
    {
        names.insert(format!("Organization/{}", org.id), name.clone());
    }
    let mut patient = record.patient.clone();
    let references = patient
        .general_practitioner
        .iter_mut()
        .chain(patient.managing_organization.as_mut());
    for reference in references {
        name_reference(reference, &names);
    }
    patient
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(prefix: &[&str], given: &[&str], family: Option<&str>) -> HumanName {
        HumanName {
            use_: Some("official".into()),
            family: family.map(str::to_owned),
            given: given.iter().map(|s| (*s).to_owned()).collect(),
            prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_name_reads_title_given_family() {
        assert_eq!(
            display_name(&[name(&["Dr"], &["Amir", "J"], Some("Khan"))]).as_deref(),
            Some("Dr Amir J Khan")
        );
        assert_eq!(
            display_name(&[name(&[], &[], Some("Khan"))]).as_deref(),
            Some("Khan")
        );
        assert_eq!(display_name(&[name(&[""], &[], None)]), None);
        assert_eq!(display_name(&[]), None);
    }

    #[test]
    fn references_are_named_once_and_only_when_known() {
        let mut obs: Resource = serde_json::from_value(serde_json::json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "code": { "text": "Body weight" },
            "subject": { "reference": "Patient/9000000009" },
            "performer": [
                { "reference": "Practitioner/p1" },
                { "reference": "Practitioner/p2" },
                { "reference": "Practitioner/p3", "display": "As recorded" }
            ],
        }))
        .unwrap();
        let names: HashMap<String, String> = [
            ("Practitioner/p1".to_owned(), "Dr A".to_owned()),
            ("Practitioner/p3".to_owned(), "Dr C".to_owned()),
        ]
        .into();
        name_references(&mut obs, &names);
        let json = serde_json::to_value(&obs).unwrap();
        assert_eq!(json["performer"][0]["display"], "Dr A");
        assert!(
            json["performer"][1].get("display").is_none(),
            "unknown: unnamed"
        );
        assert_eq!(json["performer"][2]["display"], "As recorded", "kept");
        assert!(json["subject"].get("display").is_none());
    }
}
