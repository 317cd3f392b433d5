//! Per-patient caches of GP system reads: demographics and each clinical area's full
//! entry list, bounded and expiring. Entries are cached exactly as the GP system gave
//! them; what a caller may see (confidential entries, dates, pages, scopes) is decided
//! after the cache, so one supplier's view never leaks into another's.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gp_adapter::{
    Adapter, AdapterError, CallContext, ClinicalType, PatientRecord, PatientRequest, SearchPage,
    SearchRequest,
};
use gp_fhir::date::DateRange;
use gp_fhir::json::{Fresh, RawJson};
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use serde::Deserialize;

/// Most entries of one clinical type fetched from a GP system for one patient.
pub const MAX_ENTRIES_PER_AREA: u32 = 10_000;

/// `[cache]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a GP system read is reused. 0 disables caching.
    pub ttl_secs: u64,
    /// Most patients whose demographics are kept.
    pub max_patients: u64,
    /// Most clinical entries (FHIR resources) kept across every cached (patient,
    /// clinical area) list: a list weighs its entry count (an empty list weighs 1),
    /// plus one for each entry whose answered JSON it keeps (about as large as the
    /// entry). Bounds memory by what is held, not by how many lists hold it; a list
    /// larger than the whole bound is never cached.
    pub max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 30,
            max_patients: 1_000,
            max_entries: 8_000,
        }
    }
}

type PatientKey = (OdsCode, NhsNumber);

/// What a cached entry list weighs against `max_entries`: its entries and the JSON it
/// keeps of them.
fn list_weight(area: &Area) -> u32 {
    u32::try_from(area.len().saturating_add(area.kept()))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// A cached area expires `ttl` after it was read from the GP system, however often it is
/// put again to be weighed again ([`RecordCache::reweigh`]).
struct FromRead(Duration);

impl FromRead {
    /// What is left of `area`'s time.
    fn left(&self, area: &Area) -> Option<Duration> {
        Some(self.0.saturating_sub(area.read.elapsed()))
    }
}

impl moka::Expiry<AreaKey, Arc<Area>> for FromRead {
    fn expire_after_create(&self, _: &AreaKey, area: &Arc<Area>, _: Instant) -> Option<Duration> {
        self.left(area)
    }

    fn expire_after_update(
        &self,
        _: &AreaKey,
        area: &Arc<Area>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.left(area)
    }
}
type AreaKey = (OdsCode, NhsNumber, ClinicalType);

/// One clinical area of a patient's record, as cached: every entry as the GP system
/// holds it (all dates, confidential included), and, once the area answers a second
/// time, each entry's JSON as a searchset answers it (names on its references), kept once
/// made, so a further cache hit copies it rather than cloning, naming and serialising
/// the entry again. An area answered once keeps none: under a load of misses most are
/// never answered again, and their JSON would only take room (about as much as the
/// entries themselves) from the entries the bound lets in.
pub struct Area {
    entries: Vec<Resource>,
    /// When the GP system answered it.
    read: Instant,
    /// Answers given from this area, counted to 2.
    answers: AtomicU8,
    /// Made on the second answer: a slot per entry.
    answered: OnceLock<Box<[OnceLock<RawJson>]>>,
    /// How many slots hold JSON.
    kept: AtomicUsize,
}

impl Area {
    /// The area of `entries`, as the GP system answered it now.
    pub fn new(entries: Vec<Resource>) -> Self {
        Self {
            entries,
            read: Instant::now(),
            answers: AtomicU8::new(0),
            answered: OnceLock::new(),
            kept: AtomicUsize::new(0),
        }
    }

    /// How many of its entries' JSON it keeps.
    pub fn kept(&self) -> usize {
        self.kept.load(Ordering::Relaxed)
    }

    /// Counts an answer from this area (its JSON is kept from the second on).
    pub fn answering(&self) {
        let _ = self
            .answers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < 2).then_some(n + 1)
            });
    }

    /// Entry `i`'s JSON as answered before, if it was kept.
    pub fn answered(&self, i: usize) -> Option<&RawJson> {
        self.answered.get()?.get(i)?.get()
    }

    /// Whether it keeps its entries' JSON as answered (from its second answer on).
    pub fn keeps_answers(&self) -> bool {
        self.answers.load(Ordering::Relaxed) >= 2
    }

    /// Keeps entry `i`'s JSON as answered, for the next answer, once the area has
    /// answered twice (a second keeper's is dropped: both are the same entry); before
    /// that, gives it back.
    pub fn keep_answered(&self, i: usize, json: RawJson) -> Result<(), RawJson> {
        if !self.keeps_answers() || i >= self.entries.len() {
            return Err(json);
        }
        let slots = self.answered.get_or_init(|| {
            std::iter::repeat_with(OnceLock::new)
                .take(self.entries.len())
                .collect()
        });
        if slots[i].set(json).is_ok() {
            self.kept.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl std::ops::Deref for Area {
    type Target = Vec<Resource>;

    fn deref(&self) -> &Vec<Resource> {
        &self.entries
    }
}

/// The caches.
pub struct RecordCache {
    patients: Option<moka::future::Cache<PatientKey, Arc<PatientRecord>>>,
    areas: Option<moka::future::Cache<AreaKey, Arc<Area>>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl RecordCache {
    /// Builds the caches (none when `ttl_secs` is 0).
    pub fn new(config: CacheConfig, metrics: Arc<crate::metrics::Metrics>) -> Self {
        if config.ttl_secs == 0 {
            return Self {
                patients: None,
                areas: None,
                metrics,
            };
        }
        let ttl = Duration::from_secs(config.ttl_secs);
        Self {
            patients: Some(
                moka::future::Cache::builder()
                    .max_capacity(config.max_patients)
                    .time_to_live(ttl)
                    .build(),
            ),
            areas: Some(
                moka::future::Cache::builder()
                    .max_capacity(config.max_entries)
                    .weigher(|_, list: &Arc<Area>| list_weight(list))
                    .expire_after(FromRead(ttl))
                    .build(),
            ),
            metrics,
        }
    }

    /// A patient's demographics; concurrent misses share one GP system call, and
    /// errors are never cached.
    pub async fn patient(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<Arc<PatientRecord>, AdapterError> {
        let load = async {
            let req = PatientRequest {
                nhs_number: nhs,
                practice: practice.clone(),
                context: ctx.clone(),
            };
            adapter.read_patient(&req).await.map(Arc::new)
        };
        let key = (practice.clone(), nhs);
        self.through("patient", self.patients.as_ref(), key, load)
            .await
    }

    /// Every entry of one clinical area, as the GP system holds it (all dates, confidential included).
    pub async fn area(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        nhs: NhsNumber,
        area: ClinicalType,
        ctx: &CallContext,
    ) -> Result<Arc<Area>, AdapterError> {
        let (area, _) = self
            .area_read(adapter, practice, nhs, area, ctx, false)
            .await?;
        Ok(area)
    }

    /// [`RecordCache::area`], and, when `fresh_wanted` and this call read it from the GP system,
    /// each entry's [`Fresh`] JSON for an answer made now (another request's read gives
    /// none; a read for anything else need not keep them).
    pub async fn area_read(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        nhs: NhsNumber,
        area: ClinicalType,
        ctx: &CallContext,
        fresh_wanted: bool,
    ) -> Result<(Arc<Area>, Option<FreshEntries>), AdapterError> {
        let fresh = std::sync::Mutex::new(None);
        let load = async {
            let req = whole_area(practice, nhs, area, ctx);
            let (list, entries) = kept(adapter.search(&req).await?, fresh_wanted);
            if let Ok(mut slot) = fresh.lock() {
                *slot = Some(entries);
            }
            Ok(list)
        };
        let key = (practice.clone(), nhs, area);
        let list = self.through("area", self.areas.as_ref(), key, load).await?;
        Ok((list, fresh.into_inner().ok().flatten()))
    }

    /// A patient's demographics for a read of `area` (a search, an entry by id), and
    /// the area too when one GP system call answered both
    /// ([`Adapter::read_patient_and_search`]): when neither is cached, one native read
    /// rather than two. Otherwise as [`RecordCache::patient`], and the area is `None`
    /// (read it with [`RecordCache::area`] once the patient is released).
    pub async fn patient_for(
        &self,
        adapter: &dyn Adapter,
        practice: &OdsCode,
        nhs: NhsNumber,
        area: ClinicalType,
        ctx: &CallContext,
    ) -> Result<(Arc<PatientRecord>, Option<(Arc<Area>, FreshEntries)>), AdapterError> {
        let key = (practice.clone(), nhs);
        let area_key = (practice.clone(), nhs, area);
        let patient_cached = self.patients.as_ref().is_some_and(|c| c.contains_key(&key));
        let area_cached = self
            .areas
            .as_ref()
            .is_some_and(|c| c.contains_key(&area_key));
        if patient_cached || area_cached {
            let record = self.patient(adapter, practice, nhs, ctx).await?;
            return Ok((record, None));
        }
        let fetched = std::sync::Mutex::new(None);
        let load = async {
            let req = whole_area(practice, nhs, area, ctx);
            let (record, page) = adapter.read_patient_and_search(&req).await?;
            if let Ok(mut slot) = fetched.lock() {
                *slot = Some(kept(page, true));
            }
            Ok(Arc::new(record))
        };
        let result = self
            .through("patient", self.patients.as_ref(), key, load)
            .await;
        // Another request's read may have answered this one's demographics (concurrent
        // misses share one call): then this one read nothing, and its area is read later.
        let list = fetched.into_inner().ok().flatten();
        let record = result?;
        if let Some((list, _)) = &list {
            self.metrics.cache("area", false);
            if let Some(c) = &self.areas {
                c.insert(area_key, Arc::clone(list)).await;
            }
        }
        Ok((record, list))
    }

    /// `load`'s answer through `cache` (straight from `load` when caching is off):
    /// concurrent misses of one key share one load, errors are never cached, and the
    /// hit or miss is counted under `kind`.
    async fn through<K, V>(
        &self,
        kind: &'static str,
        cache: Option<&moka::future::Cache<K, V>>,
        key: K,
        load: impl std::future::Future<Output = Result<V, AdapterError>>,
    ) -> Result<V, AdapterError>
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let missed = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            missed.store(true, std::sync::atomic::Ordering::Relaxed);
            load.await
        };
        let result = match cache {
            None => load.await,
            Some(cache) => cache
                .try_get_with(key, load)
                .await
                .map_err(|e: Arc<AdapterError>| (*e).clone()),
        };
        let hit = !missed.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.cache(kind, hit);
        result
    }

    /// Weighs `area` again, now that it keeps more of its entries' JSON, if it is still
    /// the one cached for its key (not replaced, invalidated or evicted since): the bound
    /// counts the JSON, and other lists go to make room. Its expiry is unchanged.
    pub async fn reweigh(
        &self,
        practice: &OdsCode,
        nhs: NhsNumber,
        t: ClinicalType,
        area: &Arc<Area>,
    ) {
        let Some(c) = &self.areas else {
            return;
        };
        c.entry((practice.clone(), nhs, t))
            .and_compute_with(|cached| async move {
                match cached {
                    Some(e) if Arc::ptr_eq(e.value(), area) => {
                        moka::ops::compute::Op::Put(Arc::clone(area))
                    }
                    _ => moka::ops::compute::Op::Nop,
                }
            })
            .await;
    }

    /// Forgets everything cached (the terminology maps changed: every cached record was
    /// mapped with the old ones).
    pub fn clear(&self) {
        if let Some(c) = &self.patients {
            c.invalidate_all();
        }
        if let Some(c) = &self.areas {
            c.invalidate_all();
        }
    }

    /// Forgets everything cached about a patient (after a write through the gateway).
    pub async fn invalidate(&self, practice: &OdsCode, nhs: NhsNumber) {
        if let Some(c) = &self.patients {
            c.invalidate(&(practice.clone(), nhs)).await;
        }
        if let Some(c) = &self.areas {
            for area in ClinicalType::ALL {
                c.invalidate(&(practice.clone(), nhs, *area)).await;
            }
        }
    }
}

/// A search for every entry of one clinical area, as the caches hold it.
fn whole_area(
    practice: &OdsCode,
    nhs: NhsNumber,
    area: ClinicalType,
    ctx: &CallContext,
) -> SearchRequest {
    SearchRequest {
        nhs_number: nhs,
        practice: practice.clone(),
        resource_type: area,
        date: DateRange::default(),
        count: MAX_ENTRIES_PER_AREA,
        offset: 0,
        context: ctx.clone(),
    }
}

/// Each entry of an area as read just now, by its place: the JSON its version was named
/// from ([`Fresh`]; `None` where it could not be kept), which its first answer copies.
pub type FreshEntries = Vec<Option<Fresh>>;

/// A clinical area's entries as they are kept and answered, with each one's [`Fresh`]
/// JSON for an answer made now when `fresh` (none otherwise).
fn kept(page: SearchPage, fresh: bool) -> (Arc<Area>, FreshEntries) {
    // An adapter's list often shares the allocation of the whole record it was filtered
    // from (`into_iter().filter().collect()` reuses it), so a list of 10 entries could
    // hold room for the record's 100 (752 bytes a slot) for as long as it is cached. A
    // kept list holds its entries only.
    let mut resources = page.resources;
    resources.shrink_to_fit();
    // Every entry answered (search, read, vread, structured record, a create's answer)
    // names its content version: meta.versionId and the ETag.
    let fresh = if fresh {
        resources.iter_mut().map(Resource::stamp_fresh).collect()
    } else {
        for r in &mut resources {
            r.stamp_content_version();
        }
        Vec::new()
    };
    (Arc::new(Area::new(resources)), fresh)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use gp_adapter::{GpSystem, SearchPage};
    use gp_fhir::model::Organization;

    /// Answers every search with `entries` resources, in a list with room for `spare`
    /// more (as a list filtered out of a whole record is).
    struct Lists {
        entries: usize,
        spare: usize,
    }

    #[async_trait]
    impl Adapter for Lists {
        fn system(&self) -> GpSystem {
            gp_adapter_emis::SYSTEM
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            let mut resources = Vec::with_capacity(self.entries + self.spare);
            resources.resize(
                self.entries,
                Resource::Organization(Organization::default()),
            );
            Ok(SearchPage {
                resources,
                total: u32::try_from(self.entries).unwrap(),
            })
        }
    }

    /// The `i`th synthetic 999-range NHS number with a valid check digit.
    fn nhs(i: usize) -> NhsNumber {
        (999_000_000u64..)
            .flat_map(|stem| (0..10).map(move |d| format!("{stem}{d}")))
            .filter_map(|s| NhsNumber::parse(&s).ok())
            .nth(i)
            .unwrap()
    }

    /// Caches of 10 patients and `max_entries` entries, for a minute.
    fn bounded(max_entries: u64) -> RecordCache {
        RecordCache::new(
            CacheConfig {
                ttl_secs: 60,
                max_patients: 10,
                max_entries,
            },
            Arc::new(crate::metrics::Metrics::default()),
        )
    }

    #[tokio::test]
    async fn entry_lists_are_bounded_by_the_entries_they_hold_not_by_their_number() {
        let cache = bounded(1_000);
        let adapter = Lists {
            entries: 100,
            spare: 0,
        };
        let practice = OdsCode::parse("A12345").unwrap();
        let ctx = CallContext::new("t");
        for i in 0..40 {
            let list = cache
                .area(&adapter, &practice, nhs(i), ClinicalType::ALL[0], &ctx)
                .await
                .unwrap();
            assert_eq!(list.len(), 100);
        }
        let areas = cache.areas.as_ref().unwrap();
        areas.run_pending_tasks().await;
        // 40 lists of 100 entries were read; at most 10 of them (1,000 entries) stay.
        assert!(areas.weighted_size() <= 1_000, "{}", areas.weighted_size());
        assert!(areas.entry_count() <= 10, "{}", areas.entry_count());
        assert!(areas.entry_count() >= 1);

        // A list larger than the whole bound is answered but never kept.
        let huge = Lists {
            entries: 1_001,
            spare: 0,
        };
        let other = OdsCode::parse("B12345").unwrap();
        let list = cache
            .area(&huge, &other, nhs(99), ClinicalType::ALL[0], &ctx)
            .await
            .unwrap();
        assert_eq!(list.len(), 1_001);
        areas.run_pending_tasks().await;
        assert!(!areas.contains_key(&(other, nhs(99), ClinicalType::ALL[0])));
    }

    #[tokio::test]
    async fn a_kept_list_holds_its_entries_and_no_spare_room() {
        let cache = RecordCache::new(
            CacheConfig::default(),
            Arc::new(crate::metrics::Metrics::default()),
        );
        // Ten entries filtered out of a record of 500: the adapter's list has room for 500.
        let adapter = Lists {
            entries: 10,
            spare: 490,
        };
        let practice = OdsCode::parse("A12345").unwrap();
        let ctx = CallContext::new("t");
        let first = cache
            .area(&adapter, &practice, nhs(1), ClinicalType::ALL[0], &ctx)
            .await
            .unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(
            first.capacity(),
            10,
            "the cached list keeps the record's spare room"
        );
        let again = cache
            .area(&adapter, &practice, nhs(1), ClinicalType::ALL[0], &ctx)
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second read is a cache hit"
        );
    }

    #[tokio::test]
    async fn the_json_a_list_keeps_counts_against_the_bound() {
        let cache = bounded(100);
        let adapter = Lists {
            entries: 10,
            spare: 0,
        };
        let practice = OdsCode::parse("A12345").unwrap();
        let ctx = CallContext::new("t");
        let t = ClinicalType::ALL[0];
        let mut lists = Vec::new();
        for i in 0..10 {
            lists.push(
                cache
                    .area(&adapter, &practice, nhs(i), t, &ctx)
                    .await
                    .unwrap(),
            );
        }
        let areas = cache.areas.as_ref().unwrap();
        areas.run_pending_tasks().await;
        assert_eq!((areas.weighted_size(), areas.entry_count()), (100, 10));
        // The first list answers twice and keeps its entries' JSON: it weighs 20, and
        // room is made for it.
        let first = &lists[0];
        first.answering();
        first.answering();
        for i in 0..first.len() {
            first.keep_answered(i, RawJson::of(&first[i])).unwrap();
        }
        assert_eq!(list_weight(first), 20);
        cache.reweigh(&practice, nhs(0), t, first).await;
        areas.run_pending_tasks().await;
        assert!(areas.weighted_size() <= 100, "{}", areas.weighted_size());
        assert!(areas.entry_count() <= 9, "{}", areas.entry_count());
        let cached = areas.get(&(practice.clone(), nhs(0), t)).await;
        assert!(
            cached.is_some_and(|c| Arc::ptr_eq(&c, first)),
            "still cached"
        );
        // A list no longer the cached one (dropped after a write) is not put back.
        cache.invalidate(&practice, nhs(1)).await;
        cache.reweigh(&practice, nhs(1), t, &lists[1]).await;
        areas.run_pending_tasks().await;
        assert!(!areas.contains_key(&(practice.clone(), nhs(1), t)));
    }

    #[test]
    fn a_list_expires_as_of_its_read_however_often_it_is_weighed_again() {
        let ttl = Duration::from_secs(30);
        let expiry = FromRead(ttl);
        let key = (
            OdsCode::parse("A12345").unwrap(),
            nhs(0),
            ClinicalType::ALL[0],
        );
        let fresh = Arc::new(Area::new(Vec::new()));
        let old = Arc::new(Area {
            read: Instant::now() - Duration::from_secs(20),
            ..Area::new(Vec::new())
        });
        let now = Instant::now();
        use moka::Expiry;
        for left in [
            expiry.expire_after_create(&key, &fresh, now),
            expiry.expire_after_update(&key, &fresh, now, Some(Duration::from_secs(1))),
        ] {
            assert!(left.unwrap() > Duration::from_secs(29), "{left:?}");
        }
        for left in [
            expiry.expire_after_create(&key, &old, now),
            expiry.expire_after_update(&key, &old, now, Some(ttl)),
        ] {
            let left = left.unwrap();
            assert!(left <= Duration::from_secs(10), "{left:?}");
            assert!(left > Duration::from_secs(5), "{left:?}");
        }
    }

    #[test]
    fn an_area_keeps_its_answered_json_from_its_second_answer_only() {
        let org = |id: &str| {
            Resource::Organization(Organization {
                id: id.into(),
                ..Organization::default()
            })
        };
        let area = Area::new(vec![org("a"), org("b")]);
        let json = |i: usize| RawJson::of(&area[i]);
        // Answered once (most areas under a load of misses): nothing kept, no slots made.
        area.answering();
        assert_eq!(area.keep_answered(0, json(0)), Err(json(0)));
        assert!(area.answered(0).is_none());
        assert!(area.answered.get().is_none(), "no room taken");
        // Answered again: kept, and copied by later answers.
        area.answering();
        assert_eq!(area.keep_answered(0, json(0)), Ok(()));
        assert_eq!(area.answered(0), Some(&json(0)));
        assert!(area.answered(1).is_none());
        area.answering();
        assert_eq!(area.keep_answered(1, json(1)), Ok(()));
        assert_eq!(area.answered(1), Some(&json(1)));
        // An entry it does not hold is refused, not kept.
        assert_eq!(area.keep_answered(2, json(1)), Err(json(1)));
        assert!(area.answered(2).is_none());
    }
}
