//! `[terminology]`: the national map files the adapters normalise coded entries to
//! SNOMED CT with (Read v2 and CTV3 forward maps from TRUD's NHS Data Migration pack,
//! EMIS local codes). Loaded at start (a malformed file refuses to start, naming the
//! line); reloaded on SIGHUP and when a file changes, where a malformed file is refused
//! and the running maps kept. Without the table, the curated maps built into the gateway
//! serve (the sandbox's default).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gp_adapter::terminology::{self, LoadError, MapFiles, Maps, Report};
use serde::Deserialize;
use tokio::sync::watch;

/// `[terminology]` in gateway.toml.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TerminologyConfig {
    /// Read v2 → SNOMED CT maps (`rcsctmap2_uk_*.txt`; the "not clinically assured"
    /// `rcsctmap_uk_*.txt` may follow), relative to gateway.toml.
    #[serde(default)]
    pub read_v2: Vec<PathBuf>,
    /// CTV3 → SNOMED CT maps (`ctv3sctmap2_uk_*.txt`).
    #[serde(default)]
    pub ctv3: Vec<PathBuf>,
    /// EMIS local codes → SNOMED CT, in the local-codes TSV format (docs/terminology.md).
    #[serde(default)]
    pub emis_local: Vec<PathBuf>,
    /// How often (seconds) the files are checked for a change (modification time and
    /// size); 0 = reload on SIGHUP only.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
}

fn default_reload_interval() -> u64 {
    30
}

impl Default for TerminologyConfig {
    fn default() -> Self {
        Self {
            read_v2: Vec::new(),
            ctv3: Vec::new(),
            emis_local: Vec::new(),
            reload_interval_secs: default_reload_interval(),
        }
    }
}

impl TerminologyConfig {
    /// The files, resolved against `dir` (gateway.toml's directory).
    pub fn files(&self, dir: &Path) -> MapFiles {
        let resolve = |v: &[PathBuf]| v.iter().map(|p| dir.join(p)).collect();
        MapFiles {
            read_v2: resolve(&self.read_v2),
            ctv3: resolve(&self.ctv3),
            emis_local: resolve(&self.emis_local),
        }
    }

    /// What is wrong with the table itself (the files are read by [`load`]).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.reload_interval_secs > 86_400 {
            out.push((
                "terminology.reload_interval_secs",
                "must be at most 86400 (0 = reload on SIGHUP only)".to_owned(),
            ));
        }
        for (key, files) in [
            ("terminology.read_v2", &self.read_v2),
            ("terminology.ctv3", &self.ctv3),
            ("terminology.emis_local", &self.emis_local),
        ] {
            if files.iter().any(|p| p.as_os_str().is_empty()) {
                out.push((key, "a file path is empty".to_owned()));
            }
        }
        out
    }
}

/// Loads the maps `files` names (the embedded ones where a scheme has none), logging
/// what each scheme's files held. Reads files: run it off the async workers.
pub fn load(files: &MapFiles) -> Result<Maps, LoadError> {
    let started = std::time::Instant::now();
    let (maps, reports) = Maps::load(files)?;
    for (scheme, report) in &reports {
        log_report(scheme.name(), report);
    }
    if !reports.is_empty() {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "terminology maps loaded"
        );
    }
    Ok(maps)
}

fn log_report(scheme: &str, r: &Report) {
    tracing::info!(
        scheme,
        rows = r.rows,
        active_maps = r.active,
        codes = r.codes,
        assured_share = format!("{:.1}%", r.assured_share() * 100.0),
        candidates = r.candidates.len(),
        "terminology map"
    );
    if !r.candidates.is_empty() {
        tracing::warn!(
            scheme,
            codes = r.candidates.len(),
            "codes with several candidate SNOMED CT concepts: each was decided by assurance, then effective date, then the lowest id (`gp-gateway terminology check` lists them)"
        );
    }
}

/// Loads the configured maps (embedded when `cfg` is `None` or names no file) and makes
/// them the running ones.
pub async fn install(cfg: Option<&TerminologyConfig>, dir: &Path) -> Result<(), LoadError> {
    let files = cfg.map(|c| c.files(dir)).unwrap_or_default();
    let maps = tokio::task::spawn_blocking(move || load(&files))
        .await
        .map_err(|e| LoadError {
            path: PathBuf::new(),
            line: 0,
            reason: format!("the loading task failed: {e}"),
        })??;
    terminology::install(maps);
    Ok(())
}

/// The files' modification times and sizes, to tell a change.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &MapFiles) -> Stamp {
    files
        .all()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Reloads the maps on SIGHUP and whenever a file changes (polled every
/// `reload_interval_secs`), until `stop` fires, and then forgets the `records` cached
/// (they were mapped with the old maps). A file that fails to load is logged with its
/// line and reason, and the running maps are kept. Nothing to do when no file is
/// configured.
pub fn spawn_reload(
    cfg: &TerminologyConfig,
    dir: &Path,
    records: Arc<crate::cache::RecordCache>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let files = cfg.files(dir);
    if files.all().next().is_none() {
        return;
    }
    let every =
        (cfg.reload_interval_secs > 0).then(|| Duration::from_secs(cfg.reload_interval_secs));
    tokio::spawn(async move {
        let mut last = stamp(&files);
        let mut hangups = crate::signals::Hangups::listen();
        loop {
            let polled = async {
                match every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = hangups.next() => {}
                _ = polled => {
                    if stamp(&files) == last { continue; }
                }
            }
            last = stamp(&files);
            let load_files = files.clone();
            match tokio::task::spawn_blocking(move || load(&load_files)).await {
                Ok(Ok(maps)) => {
                    terminology::install(maps);
                    records.clear();
                    metrics.terminology_reload(true);
                    tracing::info!("terminology maps reloaded");
                }
                Ok(Err(e)) => {
                    metrics.terminology_reload(false);
                    tracing::error!(error = %e, "terminology maps NOT reloaded; the running ones are kept");
                }
                Err(e) => {
                    metrics.terminology_reload(false);
                    tracing::error!(error = %e, "terminology reload failed; the running maps are kept");
                }
            }
        }
    });
}
