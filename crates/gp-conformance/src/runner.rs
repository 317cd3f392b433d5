//! Runs suites against a target and assembles the report.

use std::path::PathBuf;
use std::time::Instant;

use crate::http::{Client, Probe};
use crate::manifest::Manifest;
use crate::model::Report;
use crate::suites::{self, Recorder};

/// What to run, against what.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The gateway's origin, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    pub suites: Vec<String>,
    /// A manifest file; absent = `GET {target}/_sandbox/manifest`.
    pub manifest: Option<PathBuf>,
    /// The supplier whose recorded traffic `supplier-assessment` judges.
    pub client_id: Option<String>,
    /// `supplier-assessment` judges only traffic recorded at or after this (RFC 3339).
    pub since: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown suite '{0}' (known: {known})", known = suites::SUITES.join(", "))]
    UnknownSuite(String),
    #[error("manifest {0}: {1}")]
    Manifest(String, String),
    #[error("the supplier-assessment suite judges one supplier: pass --client-id ID")]
    NoClientId,
    #[error("--since {0}: expected an RFC 3339 date-time such as 2026-11-23T09:00:00Z")]
    BadSince(String),
}

/// Loads the manifest from a file or the target.
pub async fn load_manifest(client: &Client, opts: &RunOptions) -> Result<Manifest, RunError> {
    match &opts.manifest {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read(path)
                .map_err(|e| RunError::Manifest(shown.clone(), e.to_string()))?;
            let mut m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| RunError::Manifest(shown, e.to_string()))?;
            m.dir = path.parent().map(PathBuf::from);
            Ok(m)
        }
        None => {
            let url = format!("{}/_sandbox/manifest", opts.target.trim_end_matches('/'));
            let mut p = Probe::new(client.clone());
            let a = p
                .send("GET", &url, &[("accept", "application/json")], b"")
                .await
                .map_err(|e| RunError::Manifest(url.clone(), format!("{e:?}")))?;
            if a.status != 200 {
                return Err(RunError::Manifest(
                    url,
                    format!(
                        "HTTP {} (pass --manifest FILE for a non-sandbox target)",
                        a.status
                    ),
                ));
            }
            serde_json::from_slice(&a.body).map_err(|e| RunError::Manifest(url, e.to_string()))
        }
    }
}

/// Runs the selected suites in order.
pub async fn run(opts: &RunOptions) -> Result<Report, RunError> {
    let mut selected: Vec<&'static str> = Vec::new();
    for s in &opts.suites {
        let known = suites::SUITES
            .into_iter()
            .find(|k| k == s)
            .ok_or_else(|| RunError::UnknownSuite(s.clone()))?;
        selected.push(known);
    }
    if selected.contains(&"supplier-assessment") && opts.client_id.is_none() {
        return Err(RunError::NoClientId);
    }
    let since = opts
        .since
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| RunError::BadSince(s.to_owned()))
        })
        .transpose()?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let started = Instant::now();
    let client = Client::default();
    let manifest = load_manifest(&client, opts).await?;
    let mut ctx = suites::Ctx::new(client.clone(), manifest);
    ctx.client_id = opts.client_id.clone();
    ctx.since = since;
    let mut results: Vec<crate::model::TestResult> = Vec::new();
    for name in selected {
        let catalogue = suites::catalogue(name).unwrap_or_default();
        let mut rec = Recorder::new(name, catalogue, client.clone());
        suites::run(name, &ctx, &mut rec).await;
        // What the kit sent is never judged as the supplier's own traffic.
        ctx.kit_request_ids.extend(
            rec.results
                .iter()
                .flat_map(|r| r.evidence.iter().map(|e| e.request_id.clone()))
                .chain(rec.setup_request_ids.drain(..)),
        );
        results.extend(rec.results);
    }
    Ok(Report {
        kit_version: env!("CARGO_PKG_VERSION"),
        target: opts.target.clone(),
        suites: opts.suites.clone(),
        started: started_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        summary: Report::summarise(&results),
        results,
    })
}
