//! The suites. Each declares its catalogue (stable ids, requirement, required or not)
//! and runs its tests in order through a [`Recorder`].

use std::time::Instant;

use crate::http::{Client, Probe};
use crate::manifest::Manifest;
use crate::model::{Check, Status, TestDef, TestResult, Verdict};

pub mod provider;
pub mod security;

/// Suites the kit can run.
pub const SUITES: [&str; 2] = ["gateway-security", "provider"];

/// What every test can see.
pub struct Ctx {
    pub client: Client,
    pub manifest: Manifest,
}

/// Collects results for one suite.
pub struct Recorder {
    suite: &'static str,
    catalogue: &'static [TestDef],
    client: Client,
    pub results: Vec<TestResult>,
}

impl Recorder {
    pub fn new(suite: &'static str, catalogue: &'static [TestDef], client: Client) -> Self {
        Self {
            suite,
            catalogue,
            client,
            results: Vec::new(),
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
        });
    }

    /// Marks every catalogue test not run as omitted, with why (e.g. set-up failed).
    pub fn omit_rest(&mut self, why: &str) {
        for def in self.catalogue {
            if !self
                .results
                .iter()
                .any(|r| r.id == def.id || r.id.starts_with(&format!("{}/", def.id)))
            {
                let p = self.probe();
                self.record(def.id, None, Err(Verdict::Omit(why.to_owned())), p);
            }
        }
    }
}

/// Runs `$f(args…, &mut probe)` as catalogue test `$id` and records it.
#[macro_export]
macro_rules! run_test {
    ($rec:expr, $id:literal, $inst:expr, $f:ident ( $($arg:expr),* )) => {{
        let mut p = $rec.probe();
        let check = $f($($arg,)* &mut p.0).await;
        $rec.record($id, $inst, check, p);
    }};
}

/// Every catalogue, by suite.
pub fn catalogue(suite: &str) -> Option<&'static [TestDef]> {
    match suite {
        "gateway-security" => Some(security::CATALOGUE),
        "provider" => Some(provider::CATALOGUE),
        _ => None,
    }
}
