//! The shared adapter suite: every check of the harness, for any adapter, joined by an
//! adapter crate's tests in one call. The crate says only what is its own, in a
//! [`SuiteTarget`]: how to build its adapter for a base URL, and how to start a backend
//! (its gp-sim simulator, or a stub of its own) with the patients to use.
//!
//! ```ignore
//! struct Emis;
//!
//! #[async_trait::async_trait]
//! impl gp_adapter::harness::SuiteTarget for Emis {
//!     fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> { … }
//!     async fn start(&self) -> Backend { gp_adapter::harness::sim::backend(SystemKind::Emis).await }
//! }
//!
//! gp_adapter::adapter_suite!(Emis);
//! ```
//!
//! [`adapter_suite!`](crate::adapter_suite) expands to one `#[tokio::test]` per group
//! ([`Suite::reads`], [`Suite::writes`], [`Suite::appointments`], [`Suite::faults`],
//! [`Suite::down`]), so a
//! failure names its group and the report names each failed check. Each group starts a
//! backend of its own: writes and faults never disturb what another group reads.

use async_trait::async_trait;

use super::{FaultTarget, HarnessFixture, HarnessReport, ctx};
use crate::{Adapter, AdapterError};

/// A request timeout long enough for any healthy backend on loopback.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The request timeout for the hang fault, short so the suite stays fast.
pub const QUICK_TIMEOUT_MS: u64 = 200;

/// A running backend the suite can point an adapter at.
pub struct Backend {
    /// Where the adapter should send its native requests, e.g. `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Switches faults on and off in the backend; dropping it stops the backend.
    pub faults: Box<dyn FaultTarget>,
    /// The patients the backend holds (and one it does not).
    pub fixture: HarnessFixture,
    /// Makes changes at the practice itself, for the `changes` group; `None` skips
    /// those checks.
    pub practice: Option<Box<dyn super::PracticeSide>>,
}

/// What is system-specific about running the suite.
#[async_trait]
pub trait SuiteTarget: Send + Sync {
    /// The adapter, configured for the backend at `base_url` with this request timeout
    /// (and a connect timeout no longer than it).
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter>;

    /// Starts a fresh backend with a store of its own. Called once per group.
    async fn start(&self) -> Backend;
}

/// The shared suite for one adapter; see the module docs.
pub struct Suite<T> {
    target: T,
}

impl<T: SuiteTarget> Suite<T> {
    /// The suite for `target`.
    pub fn new(target: T) -> Self {
        Self { target }
    }

    /// Every group, in one report.
    pub async fn run(&self) -> HarnessReport {
        let mut report = self.reads().await;
        report.extend(self.writes().await);
        report.extend(self.appointments().await);
        report.extend(self.changes().await);
        report.extend(self.faults().await);
        report.extend(self.down().await);
        report
    }

    /// Reads: `ready()`, every known patient's record structurally (R4, UK Core profiles
    /// and rules, codes, references, ids), unknown patients, paging, date filters both
    /// ways, flags and confidentiality. See [`super::run`].
    pub async fn reads(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        super::run(adapter.as_ref(), &backend.fixture).await
    }

    /// Write-back ([`super::run_writes`], skipped when the adapter does not write), then
    /// the read checks again over the written record (parity skipped: it has grown).
    pub async fn writes(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        let mut report = super::run_writes(adapter.as_ref(), &backend.fixture).await;
        // The writes added entries, so the record no longer is the canonical one.
        let written = HarnessFixture {
            canonical: None,
            ..backend.fixture.clone()
        };
        let after = super::run(adapter.as_ref(), &written).await;
        report.extend_naming("after the writes", after);
        report
    }

    /// Appointment management ([`super::run_appointments`], skipped when the adapter
    /// does not manage appointments): slot search, booking, retries, a race for one slot,
    /// amend, stale amend, cancel, unknowns, appointments booked at the practice.
    pub async fn appointments(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        super::run_appointments(adapter.as_ref(), &backend.fixture).await
    }

    /// Documents ([`super::run_documents`], skipped when the adapter does not manage
    /// documents): listing, content, upload and filing, idempotency, a 6 MB PDF, unknowns.
    pub async fn documents(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        super::run_documents(adapter.as_ref(), &backend.fixture).await
    }

    /// Reading details ([`super::run_reading_details`]): every vital sign suppliers may
    /// write, and each detail `reading_support()` claims, round-trip.
    pub async fn readings(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        super::run_reading_details(adapter.as_ref(), &backend.fixture).await
    }

    /// Change logs ([`super::run_changes`], skipped when the adapter does not track
    /// changes): the cursor from now, changes through the adapter and at the practice,
    /// a practice move, a page walk, bad cursors.
    pub async fn changes(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        super::run_changes(
            adapter.as_ref(),
            &backend.fixture,
            backend.practice.as_deref(),
        )
        .await
    }

    /// The fault matrix, reads and writes ([`super::check_fault_matrix`]), against the
    /// first fixture patient.
    pub async fn faults(&self) -> HarnessReport {
        let backend = self.target.start().await;
        let adapter = self.target.adapter(&backend.base_url, REQUEST_TIMEOUT_MS);
        let quick = self.target.adapter(&backend.base_url, QUICK_TIMEOUT_MS);
        let mut report = HarnessReport::default();
        let Some(patient) = backend.fixture.patients.first() else {
            report.add(
                "ADP-FLT-00",
                "the fixture names a patient to fault",
                vec!["fixture.patients is empty".into()],
            );
            return report;
        };
        let matrix = super::check_fault_matrix(
            adapter.as_ref(),
            quick.as_ref(),
            backend.faults.as_ref(),
            patient,
        )
        .await;
        report.extend(matrix);
        report
    }

    /// A backend that is not there: `ready()` is `Unavailable`, naming the system.
    pub async fn down(&self) -> HarnessReport {
        let mut report = HarnessReport::default();
        // A loopback port nothing listens on: bound, then released.
        let base_url = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => match l.local_addr() {
                Ok(addr) => format!("http://{addr}"),
                Err(e) => {
                    report.add("ADP-RDY-02", DOWN, vec![format!("no free port: {e}")]);
                    return report;
                }
            },
            Err(e) => {
                report.add("ADP-RDY-02", DOWN, vec![format!("no free port: {e}")]);
                return report;
            }
        };
        let adapter = self.target.adapter(&base_url, REQUEST_TIMEOUT_MS);
        let system = adapter.system();
        let failures = match adapter.ready(&ctx()).await {
            Err(AdapterError::Unavailable { system: s, .. }) if s == system => vec![],
            Err(e) => vec![format!("ready() gave {e:?}, not Unavailable from {system}")],
            Ok(()) => vec!["ready() succeeded with nothing listening".into()],
        };
        report.add("ADP-RDY-02", DOWN, failures);
        report
    }
}

const DOWN: &str = "ready() fails as Unavailable when the GP system does not answer";

/// Joins the shared adapter suite: one `#[tokio::test]` per group of checks, in a
/// module `adapter_suite`, for the [`SuiteTarget`](crate::harness::SuiteTarget)
/// expression given.
///
/// ```ignore
/// gp_adapter::adapter_suite!(Emis);
/// ```
#[macro_export]
macro_rules! adapter_suite {
    ($target:expr) => {
        mod adapter_suite {
            use super::*;

            async fn group(
                name: &str,
                report: impl ::std::future::Future<Output = $crate::harness::HarnessReport>,
            ) {
                let report = report.await;
                println!("{name}:\n{report}");
                report.assert_passed();
            }

            #[tokio::test]
            async fn reads() {
                group("reads", $crate::harness::Suite::new($target).reads()).await;
            }

            #[tokio::test]
            async fn writes() {
                group("writes", $crate::harness::Suite::new($target).writes()).await;
            }

            #[tokio::test]
            async fn appointments() {
                group(
                    "appointments",
                    $crate::harness::Suite::new($target).appointments(),
                )
                .await;
            }

            #[tokio::test]
            async fn documents() {
                group(
                    "documents",
                    $crate::harness::Suite::new($target).documents(),
                )
                .await;
            }

            #[tokio::test]
            async fn readings() {
                group("readings", $crate::harness::Suite::new($target).readings()).await;
            }

            #[tokio::test]
            async fn changes() {
                group("changes", $crate::harness::Suite::new($target).changes()).await;
            }

            #[tokio::test]
            async fn faults() {
                group("faults", $crate::harness::Suite::new($target).faults()).await;
            }

            #[tokio::test]
            async fn down() {
                group("down", $crate::harness::Suite::new($target).down()).await;
            }
        }
    };
}
