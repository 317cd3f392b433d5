//! Runs suites against a target and assembles the report.

use std::path::PathBuf;
use std::time::Instant;

use crate::http::{Client, Probe};
use crate::manifest::Manifest;
use crate::model::Report;
use crate::suites::{self, Ctx, Recorder};

/// What to run, against what.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The gateway's origin, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    pub suites: Vec<String>,
    /// A manifest file; absent = `GET {target}/_sandbox/manifest`.
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown suite '{0}' (known: {known})", known = suites::SUITES.join(", "))]
    UnknownSuite(String),
    #[error("manifest {0}: {1}")]
    Manifest(String, String),
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
    for s in &opts.suites {
        if suites::catalogue(s).is_none() {
            return Err(RunError::UnknownSuite(s.clone()));
        }
    }
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let started = Instant::now();
    let client = Client::default();
    let manifest = load_manifest(&client, opts).await?;
    let ctx = Ctx {
        client: client.clone(),
        manifest,
    };
    let mut results = Vec::new();
    for s in &opts.suites {
        match s.as_str() {
            "gateway-security" => {
                let mut rec = Recorder::new(
                    "gateway-security",
                    suites::security::CATALOGUE,
                    client.clone(),
                );
                suites::security::run(&ctx, &mut rec).await;
                results.extend(rec.results);
            }
            "provider" => {
                let mut rec =
                    Recorder::new("provider", suites::provider::CATALOGUE, client.clone());
                suites::provider::run(&ctx, &mut rec).await;
                results.extend(rec.results);
            }
            other => return Err(RunError::UnknownSuite(other.to_owned())),
        }
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
