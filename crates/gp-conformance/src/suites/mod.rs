//! The suites. Each declares its catalogue (stable ids, requirement, required or not)
//! and runs its tests in order through a [`Recorder`].

use std::collections::HashSet;
use std::time::Instant;

use crate::http::{Client, Probe};
use crate::manifest::{Manifest, Supplier};
use crate::model::{Check, Status, TestDef, TestResult, Verdict};

pub mod appointments;
pub mod assessment;
pub mod documents;
pub mod notifications;
pub mod provider;
pub mod security;

/// Suites the kit can run, in the order `list` shows them.
pub const SUITES: [&str; 6] = [
    "gateway-security",
    "provider",
    "supplier-assessment",
    "appointments",
    "documents",
    "notifications",
];

/// Every catalogue, by suite.
pub fn catalogue(suite: &str) -> Option<&'static [TestDef]> {
    match suite {
        "gateway-security" => Some(security::CATALOGUE),
        "provider" => Some(provider::CATALOGUE),
        "supplier-assessment" => Some(assessment::CATALOGUE),
        "appointments" => Some(appointments::CATALOGUE),
        "documents" => Some(documents::CATALOGUE),
        "notifications" => Some(notifications::CATALOGUE),
        _ => None,
    }
}

/// Runs suite `name` (one of [`SUITES`]) into `rec`.
pub async fn run(name: &str, ctx: &Ctx, rec: &mut Recorder) {
    match name {
        "gateway-security" => security::run(ctx, rec).await,
        "provider" => provider::run(ctx, rec).await,
        "supplier-assessment" => assessment::run(ctx, rec).await,
        "appointments" => appointments::run(ctx, rec).await,
        "documents" => documents::run(ctx, rec).await,
        "notifications" => notifications::run(ctx, rec).await,
        _ => rec.omit_rest(&format!("unknown suite '{name}'")),
    }
}

/// What every test can see.
pub struct Ctx {
    pub client: Client,
    pub manifest: Manifest,
    /// The supplier under assessment (`--client-id`).
    pub client_id: Option<String>,
    /// Judge only traffic recorded at or after this instant (`--since`).
    pub since: Option<time::OffsetDateTime>,
    /// `X-Request-ID`s the kit itself sent earlier in this run: its own traffic is never
    /// judged as the supplier's.
    pub kit_request_ids: HashSet<String>,
}

impl Ctx {
    /// A context for `manifest`, with no supplier under assessment.
    pub fn new(client: Client, manifest: Manifest) -> Self {
        Self {
            client,
            manifest,
            client_id: None,
            since: None,
            kit_request_ids: HashSet::new(),
        }
    }
}

/// Collects results for one suite.
pub struct Recorder {
    suite: &'static str,
    catalogue: &'static [TestDef],
    client: Client,
    pub results: Vec<TestResult>,
    /// `X-Request-ID`s of set-up requests kept as no test's evidence (a token the tests
    /// share): still the kit's own traffic, never to be judged as a supplier's.
    pub setup_request_ids: Vec<String>,
}

impl Recorder {
    pub fn new(suite: &'static str, catalogue: &'static [TestDef], client: Client) -> Self {
        Self {
            suite,
            catalogue,
            client,
            results: Vec::new(),
            setup_request_ids: Vec::new(),
        }
    }

    pub fn probe(&self) -> (Probe, Instant) {
        (Probe::new(self.client.clone()), Instant::now())
    }

    /// Records the outcome of catalogue test `id` (`instance` names a GP system for
    /// per-system tests).
    pub fn record(
        &mut self,
        id: &str,
        instance: Option<&str>,
        check: Check,
        probe: (Probe, Instant),
    ) {
        let (probe, started) = probe;
        let def = self.catalogue.iter().find(|d| d.id == id);
        let (status, message) = match check {
            Ok(()) => (Status::Pass, String::new()),
            Err(Verdict::Fail(m)) => (Status::Fail, m),
            Err(Verdict::Skip(m)) => (Status::Skip, m),
            Err(Verdict::Omit(m)) => (Status::Omit, m),
            Err(Verdict::Error(m)) => (Status::Error, m),
        };
        self.results.push(TestResult {
            id: match instance {
                Some(i) => format!("{id}/{i}"),
                None => id.to_owned(),
            },
            suite: self.suite.to_owned(),
            group: def.map_or("", |d| d.group).to_owned(),
            title: def.map_or("(not in the catalogue)", |d| d.title).to_owned(),
            requirement: def.map_or("", |d| d.requirement).to_owned(),
            required: def.is_some_and(|d| d.required),
            status,
            message: crate::http::redact_text(&message),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            evidence: probe.evidence,
            audit_rows: probe.audit_rows,
        });
    }

    /// Marks every catalogue test not run as omitted, with why (e.g. set-up failed).
    pub fn omit_rest(&mut self, why: &str) {
        self.close_rest(Verdict::Omit(why.to_owned()));
    }

    /// Gives every catalogue test not run the same verdict (e.g. skipped: nothing to judge).
    pub fn close_rest(&mut self, verdict: Verdict) {
        for def in self.catalogue {
            if !self
                .results
                .iter()
                .any(|r| r.id == def.id || r.id.starts_with(&format!("{}/", def.id)))
            {
                let p = self.probe();
                self.record(def.id, None, Err(verdict.clone()), p);
            }
        }
    }

    /// The manifest supplier the kit reads clinical data as, and a token for it; on
    /// failure every test is omitted, saying why.
    pub async fn reader_token(&mut self, ctx: &Ctx) -> Option<(Supplier, String)> {
        let Some(sup) = ctx.manifest.reader().cloned() else {
            self.omit_rest(
                "the manifest names no supplier paired with a practice and holding a Patient scope",
            );
            return None;
        };
        let mut p = self.probe();
        let token = security::token(ctx, &sup, &mut p.0).await;
        self.setup_request_ids
            .extend(p.0.evidence.iter().map(|e| e.request_id.clone()));
        match token {
            Ok(t) => Some((sup, t)),
            Err(e) => {
                self.omit_rest(&format!("no access token for {}: {e}", sup.client_id));
                None
            }
        }
    }
}

/// Runs `$f(args…, &mut probe)` as catalogue test `$id` and records it.
#[macro_export]
macro_rules! run_test {
    ($rec:expr, $id:expr, $inst:expr, $f:ident ( $($arg:expr),* )) => {{
        let mut p = $rec.probe();
        let check = $f($($arg,)* &mut p.0).await;
        $rec.record($id, $inst, check, p);
    }};
}
