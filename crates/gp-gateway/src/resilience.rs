//! Protection around every GP system: a bulkhead (at most N calls in flight, so a slow
//! system cannot take every worker), a circuit breaker (after repeated failures, stop
//! calling and answer at once; probe with one call after a cool-down), and retries with
//! backoff for reads only. Wraps any [`Adapter`], so third-party adapters get it too.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gp_adapter::{
    Adapter, AdapterError, AppointmentBook, AppointmentRequest, BookRequest, Booked,
    BookedAppointment, CallContext, ChangeAppointmentRequest, ClinicalType,
    CreateObservationRequest, Created, GpSystem, PatientAppointmentsRequest, PatientRecord,
    PatientRequest, PractitionerRequest, SearchPage, SearchRequest, SlotSearchRequest,
    UpdateContactRequest,
};
use gp_adapter::{
    ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest, FileDocumentRequest,
    Filed, UploadContentRequest, Uploaded,
};
use gp_fhir::model::Practitioner;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// `[resilience]`: applied to each GP system separately.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Most calls in flight to one GP system.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_calls: u32,
    /// How long a call may wait for a free slot before it is refused (ms).
    #[serde(default = "default_queue_wait")]
    pub queue_wait_ms: u64,
    /// Consecutive failures (unreachable, timed out, unreadable answer) that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe is let through (ms).
    #[serde(default = "default_cooldown")]
    pub breaker_cooldown_ms: u64,
    /// Retries of a failed read (never of a write).
    #[serde(default = "default_retries")]
    pub read_retries: u32,
    /// First retry delay (ms); doubled each retry.
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
}

fn default_max_concurrent() -> u32 {
    64
}
fn default_queue_wait() -> u64 {
    250
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_cooldown() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    1
}
fn default_backoff() -> u64 {
    50
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: default_max_concurrent(),
            queue_wait_ms: default_queue_wait(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_cooldown(),
            read_retries: default_retries(),
            retry_backoff_ms: default_backoff(),
        }
    }
}

impl ResilienceConfig {
    /// Pure checks for `check-config`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=10_000).contains(&self.max_concurrent_calls) {
            out.push((
                "resilience.max_concurrent_calls",
                "must be between 1 and 10000".into(),
            ));
        }
        if self.queue_wait_ms > 60_000 {
            out.push(("resilience.queue_wait_ms", "must be at most 60000".into()));
        }
        if !(1..=1000).contains(&self.breaker_failures) {
            out.push((
                "resilience.breaker_failures",
                "must be between 1 and 1000".into(),
            ));
        }
        if !(100..=600_000).contains(&self.breaker_cooldown_ms) {
            out.push((
                "resilience.breaker_cooldown_ms",
                "must be between 100 and 600000".into(),
            ));
        }
        if self.read_retries > 5 {
            out.push(("resilience.read_retries", "must be at most 5".into()));
        }
        if !(1..=10_000).contains(&self.retry_backoff_ms) {
            out.push((
                "resilience.retry_backoff_ms",
                "must be between 1 and 10000".into(),
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is in flight; everyone else is refused until it ends.
    Probing,
}

/// Whether an error says the GP system itself is failing (as opposed to the request).
fn is_system_failure(e: &AdapterError) -> bool {
    matches!(
        e,
        AdapterError::Unavailable { .. }
            | AdapterError::Timeout { .. }
            | AdapterError::InvalidNativeData { .. }
    )
}

fn kind(e: &AdapterError) -> &'static str {
    match e {
        AdapterError::PatientNotFound | AdapterError::NotFound { .. } => "not_found",
        AdapterError::SlotUnavailable { .. } => "slot_unavailable",
        AdapterError::NotSupported { .. } => "not_supported",
        AdapterError::Unavailable { .. } => "unavailable",
        AdapterError::Timeout { .. } => "timeout",
        AdapterError::InvalidNativeData { .. } => "invalid_data",
        AdapterError::Rejected { .. } => "rejected",
        AdapterError::VersionConflict { .. } => "conflict",
        AdapterError::Unprocessable { .. } => "unprocessable",
    }
}

/// An adapter behind a bulkhead, a circuit breaker and read retries.
pub struct Resilient {
    inner: Arc<dyn Adapter>,
    system: GpSystem,
    config: ResilienceConfig,
    slots: Semaphore,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

impl Resilient {
    pub fn new(inner: Arc<dyn Adapter>, config: ResilienceConfig, metrics: Arc<Metrics>) -> Self {
        let system = inner.system();
        Self {
            inner,
            system,
            config,
            slots: Semaphore::new(config.max_concurrent_calls as usize),
            state: Mutex::new(State::Closed { failures: 0 }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or says why not. `Ok(true)` = this call is the probe.
    fn admit(&self) -> Result<bool, AdapterError> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(false),
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                Ok(true)
            }
            State::Open { until } => Err(AdapterError::Unavailable {
                system: self.system,
                detail: format!(
                    "circuit open after {} consecutive failures; calls resume with a probe in {} ms",
                    self.config.breaker_failures,
                    until.saturating_duration_since(Instant::now()).as_millis()
                ),
            }),
            State::Probing => Err(AdapterError::Unavailable {
                system: self.system,
                detail: "circuit open; a probe call is checking whether it has recovered".into(),
            }),
        }
    }

    fn record(&self, failed: bool) {
        let mut state = self.lock();
        let next = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.config.breaker_failures => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                if !matches!(*state, State::Open { .. }) {
                    self.metrics.breaker_opened(self.system.id());
                    tracing::warn!(system = %self.system, "circuit opened: GP system failing");
                }
                State::Open {
                    until: Instant::now() + Duration::from_millis(self.config.breaker_cooldown_ms),
                }
            }
        };
        *state = next;
    }

    /// One protected call.
    async fn once<T, F>(&self, call: F) -> Result<T, AdapterError>
    where
        F: std::future::Future<Output = Result<T, AdapterError>>,
    {
        let mut probe = ProbeTurn {
            breaker: self,
            held: self.admit()?,
        };
        let wait = Duration::from_millis(self.config.queue_wait_ms);
        let permit = match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics
                    .backend_call(self.system.id(), "bulkhead_full", Duration::ZERO);
                return Err(AdapterError::Unavailable {
                    system: self.system,
                    detail: format!(
                        "{} calls already in flight (bulkhead full); retry shortly",
                        self.config.max_concurrent_calls
                    ),
                });
            }
        };
        let started = Instant::now();
        let result = call.await;
        drop(permit);
        let failed = result.as_ref().err().is_some_and(is_system_failure);
        self.record(failed);
        probe.held = false;
        let outcome = result.as_ref().err().map_or("ok", kind);
        self.metrics
            .backend_call(self.system.id(), outcome, started.elapsed());
        result
    }

    /// A read: retried with backoff while the failure is transient and the circuit closed.
    async fn read<'a, T, F, Fut>(&'a self, call: F) -> Result<T, AdapterError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, AdapterError>> + 'a,
    {
        let mut attempt = 0;
        loop {
            match self.once(call()).await {
                Err(e)
                    if e.is_transient()
                        && attempt < self.config.read_retries
                        && !self.is_open() =>
                {
                    let delay = self
                        .config
                        .retry_backoff_ms
                        .saturating_mul(1 << attempt.min(10));
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }
}

/// A probe call's turn. Given back when the call ends without reporting (no slot in the
/// bulkhead, cancelled by the request timeout, or panicked): nothing was learned, and a
/// circuit left "probing" would refuse every call to the system for good.
struct ProbeTurn<'a> {
    breaker: &'a Resilient,
    held: bool,
}

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        if self.held {
            let mut state = self.breaker.lock();
            if matches!(*state, State::Probing) {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[async_trait]
impl Adapter for Resilient {
    fn system(&self) -> GpSystem {
        self.system
    }

    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        self.read(|| self.inner.read_patient(req)).await
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        self.read(|| self.inner.search(req)).await
    }

    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        self.read(|| self.inner.read_patient_and_search(req)).await
    }

    fn supported_types(&self) -> &'static [ClinicalType] {
        self.inner.supported_types()
    }

    fn reading_support(&self) -> gp_adapter::ReadingSupport {
        self.inner.reading_support()
    }

    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        self.read(|| self.inner.read_practitioner(req)).await
    }

    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        self.once(self.inner.create_observation(req)).await
    }

    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        self.once(self.inner.update_contact(req)).await
    }

    fn manages_appointments(&self) -> bool {
        self.inner.manages_appointments()
    }

    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        self.read(|| self.inner.search_slots(req)).await
    }

    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        // Idempotent on its key, but a retry could still race a second supplier for the
        // slot: booked once, never retried here.
        self.once(self.inner.book_appointment(req)).await
    }

    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        self.read(|| self.inner.read_appointment(req)).await
    }

    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        self.read(|| self.inner.search_appointments(req)).await
    }

    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        self.once(self.inner.change_appointment(req)).await
    }

    fn manages_documents(&self) -> bool {
        self.inner.manages_documents()
    }

    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        self.read(|| self.inner.search_documents(req)).await
    }

    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        self.read(|| self.inner.read_content(req)).await
    }

    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        // Content is kept unfiled: a retry could leave a second copy, so sent once.
        self.once(self.inner.upload_content(req)).await
    }

    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        self.once(self.inner.file_document(req)).await
    }

    fn tracks_changes(&self) -> bool {
        self.inner.tracks_changes()
    }

    async fn changes_since(
        &self,
        req: &gp_adapter::ChangesRequest,
    ) -> Result<gp_adapter::ChangesPage, AdapterError> {
        self.read(|| self.inner.changes_since(req)).await
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        if let State::Open { until } = *self.lock() {
            return Err(AdapterError::Unavailable {
                system: self.system,
                detail: format!(
                    "circuit open; probe in {} ms",
                    until.saturating_duration_since(Instant::now()).as_millis()
                ),
            });
        }
        self.inner.ready(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails while `failing` is set; counts calls.
    struct Flaky {
        failing: std::sync::atomic::AtomicBool,
        calls: AtomicU32,
        hold: Option<Arc<tokio::sync::Notify>>,
    }

    #[async_trait]
    impl Adapter for Flaky {
        fn system(&self) -> GpSystem {
            gp_adapter_emis::SYSTEM
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(h) = &self.hold {
                h.notified().await;
            }
            Err(if self.failing.load(Ordering::SeqCst) {
                AdapterError::Timeout {
                    system: gp_adapter_emis::SYSTEM,
                    after_ms: 1,
                }
            } else {
                AdapterError::PatientNotFound
            })
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Ok(SearchPage {
                resources: Vec::new(),
                total: 0,
            })
        }
    }

    fn req() -> PatientRequest {
        PatientRequest {
            nhs_number: gp_fhir::NhsNumber::parse("9000000009").unwrap(),
            practice: gp_fhir::OdsCode::parse("A12345").unwrap(),
            context: CallContext::new("t"),
        }
    }

    fn config() -> ResilienceConfig {
        ResilienceConfig {
            max_concurrent_calls: 2,
            queue_wait_ms: 20,
            breaker_failures: 3,
            breaker_cooldown_ms: 100,
            read_retries: 1,
            retry_backoff_ms: 1,
        }
    }

    #[tokio::test]
    async fn the_circuit_opens_fails_fast_and_recovers_through_a_probe() {
        let inner = Arc::new(Flaky {
            failing: true.into(),
            calls: AtomicU32::new(0),
            hold: None,
        });
        let r = Resilient::new(inner.clone(), config(), Arc::new(Metrics::default()));
        // Two reads, each tried twice (one retry): the third failure opens the circuit.
        assert!(matches!(
            r.read_patient(&req()).await,
            Err(AdapterError::Timeout { .. })
        ));
        assert!(matches!(
            r.read_patient(&req()).await,
            Err(AdapterError::Timeout { .. })
        ));
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            3,
            "the retry stops once the circuit opens"
        );
        let open = r.read_patient(&req()).await.unwrap_err();
        assert!(open.to_string().contains("circuit open"), "{open}");
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            3,
            "an open circuit does not call"
        );
        assert!(r.ready(&CallContext::new("t")).await.is_err());
        // After the cool-down one probe goes through; the system has recovered.
        inner.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(
            r.read_patient(&req()).await,
            Err(AdapterError::PatientNotFound)
        ));
        assert!(matches!(
            r.read_patient(&req()).await,
            Err(AdapterError::PatientNotFound)
        ));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_probe_that_never_reports_gives_its_turn_back() {
        let inner = Arc::new(Flaky {
            failing: false.into(),
            calls: AtomicU32::new(0),
            hold: Some(Arc::new(tokio::sync::Notify::new())),
        });
        let r = Resilient::new(inner.clone(), config(), Arc::new(Metrics::default()));
        *r.lock() = State::Open {
            until: Instant::now(),
        };
        let cut_short = Duration::from_millis(20);
        // The probe is cancelled (its request timed out) before the system answers...
        assert!(
            tokio::time::timeout(cut_short, r.read_patient(&req()))
                .await
                .is_err()
        );
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        // ...so the next call is the new probe, not refused as "a probe is checking".
        assert!(
            tokio::time::timeout(cut_short, r.read_patient(&req()))
                .await
                .is_err()
        );
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_full_bulkhead_refuses_rather_than_queueing_forever() {
        let hold = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(Flaky {
            failing: false.into(),
            calls: AtomicU32::new(0),
            hold: Some(hold.clone()),
        });
        let r = Arc::new(Resilient::new(
            inner.clone(),
            config(),
            Arc::new(Metrics::default()),
        ));
        let mut held = Vec::new();
        for _ in 0..2 {
            let r = r.clone();
            held.push(tokio::spawn(async move { r.read_patient(&req()).await }));
        }
        while inner.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = r.read_patient(&req()).await.unwrap_err();
        assert!(refused.to_string().contains("bulkhead full"), "{refused}");
        hold.notify_waiters();
        for h in held {
            assert!(matches!(
                h.await.unwrap(),
                Err(AdapterError::PatientNotFound)
            ));
        }
    }
}
