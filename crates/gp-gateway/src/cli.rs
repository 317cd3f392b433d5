//! The `gp-gateway` command line: parses it and the config, then wires things. The
//! shipped binary runs it with [`crate::systems::builtin`]; a vendor's binary can run it
//! with a registry of its own (`builtin().with(Registration::of::<AcmeAdapter>())`), so
//! a new GP system is served without forking the gateway.
// The CLI talks to its operator on stdout/stderr; everything else goes through tracing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AccessMode, LoadedConfig};
#[cfg(feature = "sandbox")]
use crate::sandbox;
use crate::telemetry::Telemetry;
use crate::{app::App, server};
use clap::{Parser, Subcommand, ValueEnum};
use gp_adapter::Registry;

/// The synthetic population's default seed (the sandbox's; unused without it).
#[cfg(feature = "sandbox")]
const SEED: u64 = sandbox::DEFAULT_SEED;
#[cfg(not(feature = "sandbox"))]
const SEED: u64 = 0;

/// Why a build without the `sandbox` feature (the production image) refuses a command
/// that needs the simulators or the demo suppliers.
#[cfg(not(feature = "sandbox"))]
const NO_SANDBOX: &str = "this build carries no simulators nor demo suppliers (built without the `sandbox` feature, as the production image is): run the sandbox from a development build, `cargo run -p gp-gateway -- sandbox`";

#[derive(Parser)]
#[command(
    name = "gp-gateway",
    version,
    about = "FHIR R4 gateway to English GP clinical systems"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        env = "GP_GATEWAY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway for a real deployment.
    Serve {
        /// Path of gateway.toml.
        #[arg(long, env = "GP_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration (no network, no secrets needed) and exit.
    CheckConfig {
        /// Path of gateway.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the gateway and simulators of every GP system on loopback, with demo data.
    Sandbox {
        /// Address for the gateway (default: config/sandbox/gateway.toml's server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Print the sandbox manifest (JSON) and exit.
        #[arg(long)]
        print_manifest: bool,
        /// Also write the manifest to this file once the sandbox is ready.
        #[arg(long)]
        write_manifest: Option<PathBuf>,
        /// Seed of the synthetic population.
        #[arg(long, default_value_t = SEED)]
        seed: u64,
    },
    /// Terminology map files (TRUD's NHS Data Migration forward maps, local codes).
    Terminology {
        #[command(subcommand)]
        command: TerminologyCommand,
    },
    /// Print a signed client assertion (JWT) for a token request, as a supplier's code
    /// would make one. Defaults to a sandbox demo supplier's TEST-ONLY key.
    ClientAssertion {
        /// Client id (a sandbox demo supplier, or your own with --key).
        #[arg(long)]
        client_id: String,
        /// The exact token URL (`aud`); default: the sandbox's.
        #[arg(long)]
        token_url: Option<String>,
        /// PEM private key (default: the sandbox demo supplier's).
        #[arg(long, requires_all = ["kid", "alg"])]
        key: Option<PathBuf>,
        /// Key id registered in your JWKS.
        #[arg(long)]
        kid: Option<String>,
        /// RS512, RS384 or ES384.
        #[arg(long)]
        alg: Option<String>,
        /// How many assertions to print, one per line, each with its own `jti` (for
        /// load tests of the token endpoint: an assertion is accepted once).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Subcommand)]
enum TerminologyCommand {
    /// Read map files as the gateway would and report on each: the scheme recognised,
    /// rows read, active maps, the assured share, and the codes with several candidate
    /// concepts. Exits 0, or 2 naming the file and line of the first fault in a file.
    Check {
        /// Map files (rcsctmap2_uk_*.txt, ctv3sctmap2_uk_*.txt, a local-codes TSV).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// List every code with several candidates (default: the first 20).
        #[arg(long)]
        all: bool,
    },
}

/// Logs on stderr, filtered by `GP_GATEWAY_LOG`; plus, when `[telemetry]` is on, the
/// OpenTelemetry layer with its own filter (so quieter logs do not thin out traces).
fn init_logging(format: LogFormat, telemetry: Option<&Telemetry>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GP_GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.compact().boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(telemetry.map(Telemetry::layer))
        .init();
}

/// Panics go to the log like every other error, in its format and with NHS numbers
/// masked, instead of raw to stderr: a panic in request handling is answered 500 and
/// the process keeps serving (see `pipeline::handle`), so it must be findable in the log.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = crate::redact::nhs_numbers(crate::pipeline::panic_message(info.payload()));
        let location = info.location().map(ToString::to_string);
        tracing::error!(panic = %message, location = location.as_deref().unwrap_or("unknown"), "panicked");
    }));
}

/// How long exit waits for the last spans to reach the collector.
const TELEMETRY_FLUSH: Duration = Duration::from_secs(3);

/// Runs the command line with the GP systems `systems` registers.
pub fn main(systems: Registry) -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its config before logging starts: `[telemetry]` decides what the
    // subscriber exports.
    let loaded = match &cli.command {
        Command::Serve { config } => match LoadedConfig::load(config, &systems) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("gp-gateway: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let telemetry = match loaded
        .as_ref()
        .map(|cfg| Telemetry::start(&cfg.gateway.telemetry))
        .transpose()
    {
        Ok(t) => t.flatten(),
        Err(e) => {
            eprintln!("gp-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.log_format, telemetry.as_ref());
    log_panics();
    if let Some(t) = &telemetry {
        tracing::info!(endpoint = t.endpoint(), "exporting traces over OTLP/HTTP");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gp-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::CheckConfig { config } => check_config(&config, &systems),
            Command::Serve { config } => match loaded {
                Some(cfg) => serve(&config, cfg).await,
                None => Err("configuration not loaded".to_owned()),
            },
            Command::Sandbox {
                listen,
                print_manifest,
                write_manifest,
                seed,
            } => run_sandbox(listen, print_manifest, write_manifest, seed).await,
            Command::Terminology {
                command: TerminologyCommand::Check { files, all },
            } => terminology_check(&files, all),
            Command::ClientAssertion {
                client_id,
                token_url,
                key,
                kid,
                alg,
                count,
            } => client_assertion(client_id, token_url, key, kid, alg, count),
        }
    });
    drop(runtime);
    if let Some(t) = telemetry {
        t.shutdown(TELEMETRY_FLUSH);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gp-gateway: {message}");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: &Path, systems: &Registry) -> Result<(), String> {
    let cfg = LoadedConfig::load(path, systems).map_err(|e| e.to_string())?;
    if let Some(t) = &cfg.gateway.terminology {
        let files = t.files(&cfg.dir);
        let (maps, _) =
            gp_adapter::terminology::Maps::load(&files).map_err(|e| format!("terminology: {e}"))?;
        for scheme in gp_adapter::terminology::MAPPED_SCHEMES {
            let source = match maps.source(scheme) {
                Some(gp_adapter::terminology::Source::Files(f)) => format!("{} files", f.len()),
                _ => "embedded".to_owned(),
            };
            println!(
                "terminology: {}: {} codes ({source})",
                scheme.name(),
                maps.len(scheme)
            );
        }
    }
    let systems: Vec<&str> = cfg.systems.keys().map(|s| s.id()).collect();
    println!(
        "{}: OK ({} practices; GP systems: {}; access: {:?})",
        path.display(),
        cfg.practices.len(),
        systems.join(", "),
        cfg.gateway.access.mode
    );
    Ok(())
}

/// `gp-gateway terminology check`: each file's report on stdout; a file that fails to
/// load is named with its line on stderr, and the command fails.
fn terminology_check(files: &[PathBuf], all: bool) -> Result<(), String> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = Vec::new();
    for path in files {
        match gp_adapter::terminology::load::check(path) {
            Ok(loaded) => write_report(&mut out, path, &loaded, all).map_err(|e| e.to_string())?,
            Err(e) => {
                out.flush().map_err(|e| e.to_string())?;
                eprintln!("gp-gateway: terminology check: {e}");
                failed.push(path.display().to_string());
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "terminology check: {} of {} files refused: {}",
            failed.len(),
            files.len(),
            failed.join(", ")
        ))
    }
}

/// How many codes with several candidates a report lists without `--all`.
const CANDIDATES_SHOWN: usize = 20;

fn write_report(
    out: &mut impl std::io::Write,
    path: &Path,
    loaded: &gp_adapter::terminology::load::Loaded,
    all: bool,
) -> std::io::Result<()> {
    let r = &loaded.report;
    writeln!(out, "{}", path.display())?;
    writeln!(
        out,
        "  scheme:              {} -> SNOMED CT",
        loaded.scheme.name()
    )?;
    writeln!(out, "  rows read:           {}", r.rows)?;
    writeln!(
        out,
        "  active maps:         {} (retired {}, superseded revisions {}, rows mapping to no concept {})",
        r.active, r.retired, r.superseded, r.no_concept
    )?;
    writeln!(
        out,
        "  codes mapped:        {} ({} only through a synonym term)",
        r.codes, r.synonym_only
    )?;
    if r.assurance_column {
        writeln!(
            out,
            "  assured:             {:.1}% of active maps ({} of {})",
            r.assured_share() * 100.0,
            r.assured,
            r.active
        )?;
    } else {
        writeln!(
            out,
            "  assured:             {:.1}% of active maps (the file has no IS_ASSURED column)",
            r.assured_share() * 100.0
        )?;
    }
    writeln!(
        out,
        "  several candidates:  {} (codes whose maps name more than one concept)",
        r.candidates.len()
    )?;
    let shown = if all {
        r.candidates.len()
    } else {
        CANDIDATES_SHOWN
    };
    for c in r.candidates.iter().take(shown) {
        let others: Vec<String> = c.others.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "    {}  chose {} ({}) over {}",
            c.code,
            c.chosen,
            c.decided_by.as_str(),
            others.join(", ")
        )?;
    }
    if r.candidates.len() > shown {
        writeln!(
            out,
            "    ... {} more (--all lists them)",
            r.candidates.len() - shown
        )?;
    }
    Ok(())
}

async fn serve(path: &Path, cfg: LoadedConfig) -> Result<(), String> {
    if cfg.gateway.access.mode == AccessMode::Open {
        return Err(format!(
            "{}: access.mode = \"open\" serves patient data without authentication and is accepted only by `gp-gateway sandbox`",
            path.display()
        ));
    }
    if cfg
        .gateway
        .notifications
        .as_ref()
        .is_some_and(|n| n.allow_loopback)
    {
        return Err(format!(
            "{}: notifications.allow_loopback lets subscriptions deliver to loopback over http:// and is accepted only by `gp-gateway sandbox`",
            path.display()
        ));
    }
    let tls = match &cfg.gateway.server.tls {
        Some(tls) => Some(server::tls_acceptor(tls, &cfg.dir).map_err(|e| e.to_string())?),
        None => None,
    };
    let app = Arc::new(App::build(&cfg).await.map_err(|e| e.to_string())?);
    let listener = bind(&cfg.gateway.server.listen).await?;
    let admin_listener = bind(&cfg.gateway.admin.listen).await?;
    spawn_supplier_reload(app.clone());
    let admin = server::start_admin(app.clone(), admin_listener, &cfg.gateway.server)
        .map_err(|e| e.to_string())?;
    let (records, metrics) = (app.records.clone(), app.metrics.clone());
    let handle =
        server::start(app, listener, &cfg.gateway.server, tls).map_err(|e| e.to_string())?;
    if let Some(t) = &cfg.gateway.terminology {
        crate::terminology::spawn_reload(t, &cfg.dir, records, metrics, handle.stopping());
    }
    tracing::info!(addr = %handle.addr, admin = %admin.addr, tls = cfg.gateway.server.tls.is_some(), "gp-gateway ready");
    wait_for_signal().await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    let deadline = Duration::from_millis(cfg.gateway.server.request_timeout_ms);
    // The admin listener last: `/_ready` there says "draining" while the main port drains.
    handle.shutdown(deadline).await;
    admin.shutdown(deadline).await;
    Ok(())
}

async fn bind(listen: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))
}

#[cfg(not(feature = "sandbox"))]
async fn run_sandbox(
    _listen: Option<SocketAddr>,
    _print_manifest: bool,
    _write_manifest: Option<PathBuf>,
    _seed: u64,
) -> Result<(), String> {
    Err(NO_SANDBOX.to_owned())
}

#[cfg(feature = "sandbox")]
async fn run_sandbox(
    listen: Option<SocketAddr>,
    print_manifest: bool,
    write_manifest: Option<PathBuf>,
    seed: u64,
) -> Result<(), String> {
    let listen = match listen {
        Some(l) => l,
        None => sandbox::default_listen().map_err(|e| e.to_string())?,
    };
    if print_manifest {
        let manifest = sandbox::print_manifest(listen, seed).map_err(|e| e.to_string())?;
        println!(
            "{}",
            serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let sb = sandbox::start(listen, seed)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(path) = write_manifest {
        let json = serde_json::to_vec_pretty(&sb.manifest).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("FHIR base URL: {}", sb.manifest.base_url);
    println!(
        "gp-gateway sandbox ready on {}: {} test patients on {} practices; manifest at http://{}/_sandbox/manifest; metrics at http://{}/metrics (Ctrl-C to stop)",
        sb.server.addr,
        sb.manifest.patients.len(),
        sb.manifest.practices.len(),
        sb.server.addr,
        sb.admin.addr
    );
    wait_for_signal().await;
    sb.shutdown().await;
    Ok(())
}

fn client_assertion(
    client_id: String,
    token_url: Option<String>,
    key: Option<PathBuf>,
    kid: Option<String>,
    alg: Option<String>,
    count: u32,
) -> Result<(), String> {
    let token_url = match token_url {
        Some(url) => url,
        #[cfg(feature = "sandbox")]
        None => {
            let listen = sandbox::default_listen().map_err(|e| e.to_string())?;
            format!("http://{listen}/oauth2/token")
        }
        #[cfg(not(feature = "sandbox"))]
        None => return Err(format!("--token-url is required: {NO_SANDBOX}")),
    };
    let assertion = match key {
        Some(path) => gp_auth::ClientAssertion {
            client_id,
            kid: kid.unwrap_or_default(),
            alg: alg.unwrap_or_default(),
            private_key_pem: std::fs::read(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        },
        #[cfg(feature = "sandbox")]
        None => sandbox::demo_identity(&client_id).map_err(|e| e.to_string())?,
        #[cfg(not(feature = "sandbox"))]
        None => return Err(format!("--key is required: {NO_SANDBOX}")),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let signed = assertion.sign(&token_url, 240).map_err(|e| e.to_string())?;
        writeln!(out, "{signed}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// Reloads the supplier registry on SIGHUP and whenever its file changes.
fn spawn_supplier_reload(app: Arc<App>) {
    let Some(path) = app.auth.as_ref().and_then(|a| a.suppliers_path.clone()) else {
        return;
    };
    tokio::spawn(async move {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut last = modified(&path);
        let mut hangups = crate::signals::Hangups::listen();
        loop {
            let signalled = hangups.next();
            tokio::select! {
                _ = signalled => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    let now = modified(&path);
                    if now == last { continue; }
                }
            }
            last = modified(&path);
            if let Some(auth) = &app.auth {
                match auth.reload_suppliers() {
                    Ok(n) => tracing::info!(suppliers = n, "supplier registry reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "supplier registry NOT reloaded; the running one is kept")
                    }
                }
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
