//! The result model: a test's definition, its verdict and the evidence it keeps.

use serde::Serialize;

/// One recorded request and response, redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    /// 0 when no response came (see `transport_error`).
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub elapsed_ms: u64,
    /// `X-Request-ID` sent: the trace id to quote to the service desk.
    pub request_id: String,
    pub transport_error: Option<String>,
}

/// A test as the catalogue declares it: its stable id never changes once published.
#[derive(Debug, Clone, Copy)]
pub struct TestDef {
    /// Stable id, e.g. `SEC-TOK-01`.
    pub id: &'static str,
    /// Group within the suite, e.g. `token-endpoint`.
    pub group: &'static str,
    pub title: &'static str,
    /// Requirement identifier in `conformance/requirements.csv`.
    pub requirement: &'static str,
    /// A failure of a required test makes the run fail (non-zero exit).
    pub required: bool,
}

impl TestDef {
    /// A required test: its failure fails the run.
    pub const fn required(
        id: &'static str,
        group: &'static str,
        title: &'static str,
        requirement: &'static str,
    ) -> Self {
        Self {
            id,
            group,
            title,
            requirement,
            required: true,
        }
    }

    /// An optional test: reported, never fails the run.
    pub const fn optional(
        id: &'static str,
        group: &'static str,
        title: &'static str,
        requirement: &'static str,
    ) -> Self {
        Self {
            required: false,
            ..Self::required(id, group, title, requirement)
        }
    }
}

/// A test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Could not be judged here (the reason says why).
    Skip,
    /// Not applicable to this target or not selected.
    Omit,
    /// The kit could not run the test (transport failure, unusable manifest…).
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skip => "skip",
            Self::Omit => "omit",
            Self::Error => "error",
        }
    }
}

/// Why a test did not pass; `Ok(())` from a test body is a pass.
#[derive(Debug, Clone)]
pub enum Verdict {
    Fail(String),
    Skip(String),
    Omit(String),
    Error(String),
}

impl Verdict {
    /// What the verdict says, whatever its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Fail(m) | Self::Skip(m) | Self::Omit(m) | Self::Error(m) => m,
        }
    }
}

/// What a test body returns.
pub type Check = Result<(), Verdict>;

/// Fails with `msg` unless `cond` holds.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(msg()))
    }
}

/// One test's outcome with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// Stable id (per-system provider tests carry the system: `PRV-PAT-01/emis`).
    pub id: String,
    pub suite: String,
    pub group: String,
    pub title: String,
    pub requirement: String,
    pub required: bool,
    pub status: Status,
    /// Why it failed, was skipped, omitted or errored; empty on a pass.
    pub message: String,
    pub duration_ms: u64,
    pub evidence: Vec<Exchange>,
    /// Audit-trail rows a judgement of recorded traffic rests on (supplier assessment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_rows: Vec<AuditRow>,
}

/// One row of the gateway's audit trail as the kit read it (an `AuditEvent`), with no
/// patient identifier: what a supplier-assessment verdict points at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// The AuditEvent id.
    pub id: String,
    /// RFC 3339, milliseconds.
    pub recorded: String,
    /// `read`, `search-type`, `create`, `patch`, `operation`, `token` (a token request)…
    pub interaction: String,
    pub resource_type: String,
    pub status: u16,
    /// The Spine (or, for a token request, OAuth2) error code of a refusal, empty otherwise.
    pub outcome: String,
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// Who chose that id: `client`, `gateway`, or `unknown` (rows from before the
    /// gateway recorded it).
    pub request_id_source: String,
    /// The access token's id (`jti`), never the token: the one a call used, or the one a
    /// token request was issued.
    pub token_id: String,
}

impl AuditRow {
    /// One line for a report.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} {} HTTP {}",
            self.recorded, self.interaction, self.resource_type, self.status
        );
        if !self.outcome.is_empty() {
            s.push(' ');
            s.push_str(&self.outcome);
        }
        s.push_str(&format!(
            "  X-Request-ID {} ({})  token {}  AuditEvent/{}",
            self.request_id,
            self.request_id_source,
            if self.token_id.is_empty() {
                "-"
            } else {
                &self.token_id
            },
            self.id
        ));
        s
    }
}

/// Counts by status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub omit: usize,
    pub error: usize,
    /// Required tests that failed or errored.
    pub required_failed: usize,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kit_version: &'static str,
    pub target: String,
    pub suites: Vec<String>,
    /// RFC 3339.
    pub started: String,
    pub duration_ms: u64,
    pub summary: Summary,
    pub results: Vec<TestResult>,
}

impl Report {
    pub fn summarise(results: &[TestResult]) -> Summary {
        let mut s = Summary {
            total: results.len(),
            ..Summary::default()
        };
        for r in results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
                Status::Omit => s.omit += 1,
                Status::Error => s.error += 1,
            }
            if r.required && matches!(r.status, Status::Fail | Status::Error) {
                s.required_failed += 1;
            }
        }
        s
    }

    /// Whether the run passes: no required test failed or errored.
    pub fn passed(&self) -> bool {
        self.summary.required_failed == 0
    }

    /// The result of the test `id`.
    pub fn result(&self, id: &str) -> Option<&TestResult> {
        self.results.iter().find(|r| r.id == id)
    }
}
