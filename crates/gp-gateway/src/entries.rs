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

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gp_adapter::ClinicalType;
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};

/// How long an answered entry can be read by its id.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a replica waits for Redis when reading or sharing an entry's patient.
const SHARED_TIMEOUT: Duration = Duration::from_millis(500);

/// Entries answered, by type and id, with their patient; Practitioners referred to, by
/// id, with their practice.
pub struct EntryIndex {
    patients: Remembered,
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
            patients: Remembered::new(max_entries),
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
            self.patients.insert(t, &id, nhs);
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
            if self.patients.get(t, r.id()).is_some() {
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
        if let Some(nhs) = self.patients.get(t, id) {
            return Some(nhs);
        }
        let shared = self.shared.as_ref()?;
        let found = shared.lookup(shared.key(t.as_str(), id)).await;
        let nhs = NhsNumber::parse(&found?).ok()?;
        self.patients.insert(t, id, nhs);
        Some(nhs)
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

/// The patient of each answered entry, kept compactly: a 64-bit hash of the entry's type
/// and id (keyed at random per process) to the NHS number and when it was answered (one
/// word), about 30 bytes an entry with the eviction queue and the table's spare room, where a general cache node (the key's String,
/// the node, its deques and hash table slot) took several hundred, enough to add some 40 MiB
/// under load at 200,000 entries. Two entries sharing a hash cannot release the wrong one:
/// a read by id looks for the id itself in the remembered patient's record, so the entry
/// whose patient was overwritten reads as unknown. Sharded, each shard holding an equal
/// part of the bound; the least recently answered go first, and none outlive
/// [`REMEMBERED_FOR`].
struct Remembered {
    keys: std::hash::RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    started: Instant,
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    /// Hash of (type, id) → the patient ([`NhsNumber::stem`]), the answer's sequence
    /// number, and its second.
    map: HashMap<u64, Entry, BuildHasherDefault<Passed>>,
    /// (hash, sequence number) in the order answered, as three words: the front goes
    /// first. An entry answered again is queued again; its earlier place is passed over.
    order: VecDeque<[u32; 3]>,
    next: u32,
}

/// What a shard keeps of an entry, in three words.
#[derive(Clone, Copy)]
struct Entry {
    stem: u32,
    seq: u32,
    at: u32,
}

/// A queued (hash, sequence number).
fn queued(key: u64, seq: u32) -> [u32; 3] {
    [(key >> 32) as u32, key as u32, seq]
}

/// The hash and sequence number of a queued place.
fn unqueued(q: [u32; 3]) -> (u64, u32) {
    (u64::from(q[0]) << 32 | u64::from(q[1]), q[2])
}

/// The keys are hashes already: passed through as they are.
#[derive(Default)]
struct Passed(u64);

impl Hasher for Passed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Remembered {
    fn new(max_entries: u64) -> Self {
        let max = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            keys: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            started: Instant::now(),
        }
    }

    fn key(&self, t: ClinicalType, id: &str) -> u64 {
        self.keys.hash_one((t, id))
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[self.shard_of(key)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shard of `key`: the low bits pick the hash table's slot, the high ones the shard.
    fn shard_of(&self, key: u64) -> usize {
        usize::try_from(key >> 60).unwrap_or(0) % self.shards.len()
    }

    fn fresh(&self, at: u32, now: u32) -> bool {
        u64::from(now.saturating_sub(at)) < REMEMBERED_FOR.as_secs()
    }

    fn get(&self, t: ClinicalType, id: &str) -> Option<NhsNumber> {
        self.get_at(t, id, self.now())
    }

    fn insert(&self, t: ClinicalType, id: &str, nhs: NhsNumber) {
        self.insert_at(t, id, nhs, self.now());
    }

    /// [`Remembered::get`] at second `now` of the index.
    fn get_at(&self, t: ClinicalType, id: &str, now: u32) -> Option<NhsNumber> {
        let key = self.key(t, id);
        let shard = self.shard(key);
        let entry = *shard.map.get(&key)?;
        if !self.fresh(entry.at, now) {
            return None;
        }
        NhsNumber::from_stem(entry.stem)
    }

    /// [`Remembered::insert`] at second `now` of the index.
    fn insert_at(&self, t: ClinicalType, id: &str, nhs: NhsNumber, now: u32) {
        let key = self.key(t, id);
        let mut shard = self.shard(key);
        let seq = shard.next;
        shard.next = seq.wrapping_add(1);
        let entry = Entry {
            stem: nhs.stem(),
            seq,
            at: now,
        };
        shard.map.insert(key, entry);
        shard.order.push_back(queued(key, seq));
        // Over the bound (or a queue grown by repeats), or answered too long ago: the
        // oldest go. A queued place no longer current (the entry was answered again
        // since) is passed over, leaving its entry alone.
        let most_queued = self.per_shard + self.per_shard / 4 + 1;
        while let Some(&front) = shard.order.front() {
            let (old, old_seq) = unqueued(front);
            let current = shard.map.get(&old).filter(|e| e.seq == old_seq).copied();
            if let Some(e) = current {
                let over = shard.map.len() > self.per_shard || shard.order.len() > most_queued;
                if !over && self.fresh(e.at, now) {
                    break;
                }
                shard.map.remove(&old);
            }
            shard.order.pop_front();
        }
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

    #[test]
    fn the_least_recently_answered_go_first_and_the_bound_holds() {
        let remembered = Remembered::new(1600);
        let nhs = NhsNumber::parse("9000000009").unwrap();
        for i in 0..10_000 {
            remembered.insert(ClinicalType::Observation, &format!("obs-{i}"), nhs);
        }
        let kept: usize = remembered
            .shards
            .iter()
            .map(|s| s.lock().unwrap().map.len())
            .sum();
        assert!(kept <= 1600, "{kept} kept");
        assert!(kept >= 1200, "{kept} kept");
        assert_eq!(
            remembered.get(ClinicalType::Observation, "obs-9999"),
            Some(nhs)
        );
        assert_eq!(remembered.get(ClinicalType::Observation, "obs-0"), None);
        assert_eq!(remembered.get(ClinicalType::Condition, "obs-9999"), None);
    }

    #[test]
    fn an_entry_answered_again_is_kept_as_of_its_last_answer() {
        let remembered = Remembered::new(1600);
        let t = ClinicalType::Observation;
        let (a, b) = (
            NhsNumber::parse("9000000009").unwrap(),
            NhsNumber::parse("9000000017").unwrap(),
        );
        let key = remembered.key(t, "again");
        let first = remembered.shard(key).next;
        remembered.insert(t, "again", a);
        let queued = |r: &Remembered| {
            r.shard(key)
                .order
                .iter()
                .any(|&q| unqueued(q) == (key, first))
        };
        // Others answered until its shard is full, then it is answered again (now for
        // another patient, as after a GP system's merge), then others until its first
        // answer's turn to go has come: the second answer stays.
        let mut i = 0;
        let mut answer = |r: &Remembered| {
            i += 1;
            r.insert(t, &format!("obs-{i}"), a);
            i
        };
        while remembered.shard(key).map.len() < remembered.per_shard {
            answer(&remembered);
        }
        remembered.insert(t, "again", b);
        while queued(&remembered) && answer(&remembered) < 1_000_000 {}
        assert!(!queued(&remembered), "the first answer went");
        assert_eq!(remembered.get(t, "again"), Some(b));
    }

    #[test]
    fn an_entry_is_forgotten_once_remembered_for_its_time() {
        let remembered = Remembered::new(1600);
        let t = ClinicalType::Observation;
        let nhs = NhsNumber::parse("9000000009").unwrap();
        let day = u32::try_from(REMEMBERED_FOR.as_secs()).unwrap();
        remembered.insert_at(t, "old", nhs, 0);
        assert_eq!(remembered.get_at(t, "old", day - 1), Some(nhs));
        assert_eq!(remembered.get_at(t, "old", day), None);
        // A later answer in its shard takes it out of the queue and the table.
        let old = remembered.key(t, "old");
        for i in 0.. {
            let id = format!("new-{i}");
            remembered.insert_at(t, &id, nhs, day);
            if remembered.shard_of(remembered.key(t, &id)) == remembered.shard_of(old) {
                break;
            }
        }
        let shard = remembered.shard(old);
        assert!(!shard.map.contains_key(&old));
        assert!(shard.order.iter().all(|&q| unqueued(q).0 != old));
    }
}
