//! `gp-conformance`: the command line of the conformance kit. Parses arguments, runs the
//! suites, writes the reports, and exits non-zero when a required test fails.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI front end: its output is the point

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gp_conformance::{RunOptions, report};

#[derive(Parser)]
#[command(
    name = "gp-conformance",
    version,
    about = "Conformance kit for the supplier onboarding team"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run suites against a gateway (black box, over HTTP).
    Run {
        /// The gateway's origin, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        target: String,
        /// Suite to run (repeatable): gateway-security, provider, supplier-assessment,
        /// appointments, documents, notifications (`list` shows their tests).
        #[arg(long = "suite", required = true)]
        suites: Vec<String>,
        /// Manifest file (sandbox manifest format); default: GET {target}/_sandbox/manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Folder for junit.xml, report.json and report.html.
        #[arg(long)]
        report: Option<PathBuf>,
        /// supplier-assessment: the client id of the supplier whose recorded traffic is
        /// judged (read from the audit trail as the manifest's operator client).
        #[arg(long = "client-id")]
        client_id: Option<String>,
        /// supplier-assessment: judge only traffic recorded at or after this RFC 3339
        /// date-time, e.g. 2026-11-23T09:00:00Z.
        #[arg(long)]
        since: Option<String>,
    },
    /// List the suites and their tests.
    List,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => {
            for suite in gp_conformance::suites::SUITES {
                println!("{suite}");
                for d in gp_conformance::suites::catalogue(suite).unwrap_or_default() {
                    println!(
                        "  {:<12} {:<8} {}{}",
                        d.id,
                        d.requirement,
                        d.title,
                        if d.required { "" } else { " (optional)" }
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            target,
            suites,
            manifest,
            report: dir,
            client_id,
            since,
        } => {
            let opts = RunOptions {
                target,
                suites,
                manifest,
                client_id,
                since,
            };
            let report = match gp_conformance::run(&opts).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("gp-conformance: {e}");
                    return ExitCode::from(2);
                }
            };
            for r in &report.results {
                let req = if r.required { "" } else { " (optional)" };
                println!(
                    "{:<5} {:<18} {}{req}{}",
                    r.status.as_str(),
                    r.id,
                    r.title,
                    if r.message.is_empty() {
                        String::new()
                    } else {
                        format!("\n      {}", r.message)
                    }
                );
            }
            let s = &report.summary;
            println!(
                "\n{} tests: {} pass, {} fail, {} error, {} skip, {} omit; {} required failed",
                s.total, s.pass, s.fail, s.error, s.skip, s.omit, s.required_failed
            );
            if let Some(dir) = dir {
                match report::write_all(&report, &dir) {
                    Ok(paths) => {
                        for p in paths {
                            println!("wrote {}", p.display());
                        }
                    }
                    Err(e) => {
                        eprintln!("gp-conformance: writing reports to {}: {e}", dir.display());
                        return ExitCode::from(2);
                    }
                }
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
