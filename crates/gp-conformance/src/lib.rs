//! The supplier onboarding conformance kit: black-box suites run over HTTP against a
//! gateway (or the sandbox), each test traced to a requirement in
//! `conformance/requirements.csv`, with redacted evidence and JUnit/JSON/HTML reports.

pub mod http;
pub mod manifest;
pub mod model;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod suites;
pub mod webhook;

pub use manifest::Manifest;
pub use model::{Report, Status, TestResult};
pub use runner::{RunError, RunOptions, run};
