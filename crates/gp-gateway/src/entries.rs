//! Which patient a record entry belongs to, for reads by id. A GP system's entry ids
//! (EMIS GUIDs, SystmOne event ids, …) do not say whose record holds them, so the gateway
//! remembers, for a day, the patient of every entry it answers: in a search, the
//! structured record or a create. A read by id finds the patient here, then reads the
//! entry through the same release policy as the search would; an id never answered is
//! not found. It remembers likewise the practice of every Practitioner the answers
//! refer to (a GP system's staff ids do not say where they work either), for reads of
//! `Practitioner/{id}`. With `[state] backend = "redis"` the replicas share what they
//! remember (`{key_prefix}entry:{Type}/{id}`), so an entry answered by one is read at
//! another. It remembers too, for each Bundle and List the structured record answered,
//! the request that made it (not its content), so a read of the id answers it again.

use std::hash::BuildHasher;
use std::time::Duration;

use gp_adapter::ClinicalType;
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};

use crate::remembered::Remembered;

/// How long an answered entry can be read by its id.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a replica waits for Redis when reading or sharing an entry's patient.
const SHARED_TIMEOUT: Duration = Duration::from_millis(500);

/// Entries answered, by type and id, with their patient; Practitioners referred to, by
/// id, with their practice.
pub struct EntryIndex {
    /// By a 64-bit hash of the entry's type and id (keyed at random per process): the
    /// patient ([`NhsNumber::stem`]). Two entries sharing a hash cannot release the wrong
    /// one: a read by id looks for the id itself in the remembered patient's record, so
    /// the entry whose patient was overwritten reads as unknown.
    patients: Remembered,
    keys: std::hash::RandomState,
    practices: moka::future::Cache<String, OdsCode>,
    /// By `Bundle/{id}` or `List/{id}`: what the structured record was asked.
    answers: moka::future::Cache<String, String>,
    shared: Option<Shared>,
}

/// The type under which a Practitioner's practice is remembered and shared.
const PRACTITIONER: &str = "Practitioner";

/// Where the replicas share what they remember.
#[derive(Clone)]
struct Shared {
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

impl Shared {
    fn key(&self, t: &str, id: &str) -> String {
        format!("{}entry:{t}/{id}", self.prefix)
    }

    /// Shares `(key, value)` pairs for a day; bounded: Redis slow or down costs at most
    /// the timeout, and the entries are then readable by id at this replica only.
    async fn share(&self, pairs: Vec<(String, String)>) {
        let mut pipe = redis::pipe();
        for (key, value) in pairs {
            pipe.set_ex(key, value, REMEMBERED_FOR.as_secs()).ignore();
        }
        let mut conn = self.redis.clone();
        let sent = tokio::time::timeout(SHARED_TIMEOUT, pipe.query_async::<()>(&mut conn));
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "entries not shared: other replicas cannot read them by id")
            }
            Err(_) => {
                tracing::warn!("entries not shared in time: other replicas cannot read them by id")
            }
        }
    }

    /// What another replica shared under `key`, if anything (unreachable: nothing).
    async fn lookup(&self, key: String) -> Option<String> {
        let mut conn = self.redis.clone();
        let mut get = redis::cmd("GET");
        get.arg(key);
        let asked = get.query_async::<Option<String>>(&mut conn);
        match tokio::time::timeout(SHARED_TIMEOUT, asked).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "entry index unreachable: read by id answered as unknown");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "entry index did not answer in time: read by id answered as unknown"
                );
                None
            }
        }
    }
}

impl EntryIndex {
    /// An index of at most `max_entries` entries.
    pub fn new(max_entries: u64) -> Self {
        Self {
            patients: Remembered::new(max_entries, REMEMBERED_FOR),
            keys: std::hash::RandomState::new(),
            practices: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(REMEMBERED_FOR)
                .build(),
            answers: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(REMEMBERED_FOR)
                .build(),
            shared: None,
        }
    }

    /// This index, sharing what it remembers with the other replicas through Redis at
    /// `url`, under `prefix`.
    pub async fn shared(mut self, url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        let redis = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| format!("cannot connect to Redis for the entry index: {e}"))?;
        self.shared = Some(Shared {
            redis,
            prefix: prefix.to_owned(),
        });
        Ok(self)
    }

    /// Remembers that `nhs`'s record holds each of `entries` (see
    /// [`EntryIndex::unknown`]).
    pub async fn remember(&self, nhs: NhsNumber, entries: Vec<(ClinicalType, String)>) {
        if entries.is_empty() {
            return;
        }
        if let Some(shared) = &self.shared {
            // Shared before the answer goes: a client may read it back at another
            // replica at once.
            let pairs = entries
                .iter()
                .map(|(t, id)| (shared.key(t.as_str(), id), nhs.to_string()))
                .collect();
            shared.share(pairs).await;
        }
        for (t, id) in entries {
            self.remember_one(t, &id, nhs);
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
            if self.remembered(t, r.id()).is_some() {
                continue;
            }
            out.push((t, r.id().to_owned()));
            out.extend(r.references().into_iter().filter_map(|reference| {
                let (t, id) = reference.split_once('/')?;
                Some((ClinicalType::parse(t)?, id.to_owned()))
            }));
        }
        out
    }

    /// The patient whose record holds entry `id` of type `t`, if it was answered.
    pub async fn patient_of(&self, t: ClinicalType, id: &str) -> Option<NhsNumber> {
        if let Some(nhs) = self.remembered(t, id) {
            return Some(nhs);
        }
        let shared = self.shared.as_ref()?;
        let found = shared.lookup(shared.key(t.as_str(), id)).await;
        let nhs = NhsNumber::parse(&found?).ok()?;
        self.remember_one(t, id, nhs);
        Some(nhs)
    }

    fn key(&self, t: ClinicalType, id: &str) -> u64 {
        self.keys.hash_one((t, id))
    }

    /// The patient remembered here (not asked of the other replicas) for `(t, id)`.
    fn remembered(&self, t: ClinicalType, id: &str) -> Option<NhsNumber> {
        NhsNumber::from_stem(self.patients.get(self.key(t, id))?)
    }

    fn remember_one(&self, t: ClinicalType, id: &str, nhs: NhsNumber) {
        self.patients.insert(self.key(t, id), nhs.stem());
    }

    /// The Practitioners `resources` refer to that are not yet remembered (a repeated
    /// answer costs a lookup each, no more).
    pub fn unknown_people<'a>(
        &self,
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in resources {
            for reference in r.references() {
                if let Some(id) = reference.strip_prefix("Practitioner/")
                    && !self.practices.contains_key(id)
                    && !out.iter().any(|o| o == id)
                {
                    out.push(id.to_owned());
                }
            }
        }
        out
    }

    /// Remembers that `people` (Practitioner ids) work at `practice`.
    pub async fn remember_people(&self, practice: &OdsCode, people: Vec<String>) {
        if people.is_empty() {
            return;
        }
        if let Some(shared) = &self.shared {
            let pairs = people
                .iter()
                .map(|id| (shared.key(PRACTITIONER, id), practice.to_string()))
                .collect();
            shared.share(pairs).await;
        }
        for id in people {
            self.practices.insert(id, practice.clone()).await;
        }
    }

    /// Remembers how each of `answers` was made: `(type, id, request)`, the type
    /// `Bundle` or `List`, the request what [`EntryIndex::answer_of`] gives back.
    pub async fn remember_answers(&self, answers: Vec<(&str, String, String)>) {
        if let Some(shared) = &self.shared {
            let pairs = answers
                .iter()
                .map(|(t, id, request)| (shared.key(t, id), request.clone()))
                .collect();
            shared.share(pairs).await;
        }
        for (t, id, request) in answers {
            self.answers.insert(format!("{t}/{id}"), request).await;
        }
    }

    /// The request that made the answer `id` of type `t` (`Bundle` or `List`), if one
    /// was answered.
    pub async fn answer_of(&self, t: &str, id: &str) -> Option<String> {
        let key = format!("{t}/{id}");
        if let Some(request) = self.answers.get(&key).await {
            return Some(request);
        }
        let shared = self.shared.as_ref()?;
        let found = shared.lookup(shared.key(t, id)).await?;
        self.answers.insert(key, found.clone()).await;
        Some(found)
    }

    /// The practice of the Practitioner `id`, if an answer referred to them.
    pub async fn practice_of(&self, id: &str) -> Option<OdsCode> {
        if let Some(ods) = self.practices.get(id).await {
            return Some(ods);
        }
        let shared = self.shared.as_ref()?;
        let found = shared.lookup(shared.key(PRACTITIONER, id)).await;
        let ods = OdsCode::parse(&found?).ok()?;
        self.practices.insert(id.to_owned(), ods.clone()).await;
        Some(ods)
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
