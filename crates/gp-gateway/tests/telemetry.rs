//! Tracing across gateway → adapter → GP system, observed on the wire: a recording proxy
//! sits between the gateway and the simulated EMIS and keeps every `traceparent` the
//! native calls carry. And with `[telemetry]` pointing at a collector that is not there,
//! requests are answered as usual and `serve` still exits promptly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gp_gateway::config::AccessMode;
use gp_gateway::telemetry::{Telemetry, TelemetryConfig, TraceContext};
use gp_sim::{Population, PopulationSpec, SimHandle, SimStore, SystemKind};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A generous bound: a request waiting on a missing collector would blow it.
const PROMPT: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Forwards to `target`, recording each request's path and `traceparent`.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Seen>>>);

/// A request's path and `traceparent`.
type Seen = (String, Option<String>);

impl Recorded {
    /// The `traceparent`s of record requests (health probes left out).
    fn traceparents(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| !path.ends_with("/health"))
            .map(|(_, tp)| tp.clone())
            .collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

async fn recording_proxy(target: SocketAddr) -> (String, Recorded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Recorded::default();
    let log = recorded.clone();
    let upstream = client();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (log, upstream) = (log.clone(), upstream.clone());
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (log, upstream) = (log.clone(), upstream.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let traceparent = parts
                        .headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_owned());
                    log.0
                        .lock()
                        .unwrap()
                        .push((parts.uri.path().to_owned(), traceparent));
                    let path = parts.uri.path_and_query().unwrap().as_str();
                    parts.uri = format!("http://{target}{path}").parse().unwrap();
                    #[allow(clippy::disallowed_methods)] // test-sized bodies
                    let body = body.collect().await.unwrap().to_bytes();
                    let resp = upstream
                        .request(http::Request::from_parts(parts, Full::new(body)))
                        .await
                        .unwrap();
                    let (parts, body) = resp.into_parts();
                    #[allow(clippy::disallowed_methods)]
                    let body = body.collect().await.unwrap().to_bytes();
                    Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                        parts,
                        Full::new(body),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (format!("http://{addr}"), recorded)
}

/// A gateway (open access) whose EMIS calls pass through a recording proxy.
struct Rig {
    base: String,
    recorded: Recorded,
    emis_patients: Vec<String>,
    _sims: Vec<SimHandle>,
    _server: gp_gateway::server::ServerHandle,
}

async fn rig() -> Rig {
    // More EMIS patients than the sandbox's: every read below names a new one.
    let spec = PopulationSpec {
        patients_per_practice: 20,
        ..PopulationSpec::sandbox()
    };
    let population = Population::generate(gp_gateway::sandbox::DEFAULT_SEED, &spec);
    let store = SimStore::new(population.clone());
    let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let pds = gp_sim::start_pds(store.clone(), bind().await)
        .await
        .unwrap();
    let emis = gp_sim::start_emis(store.clone(), bind().await)
        .await
        .unwrap();
    let (proxy, recorded) = recording_proxy(emis.addr).await;
    // Only EMIS patients are asked for: the other systems are never called.
    let unused = "http://127.0.0.1:9".to_owned();
    let urls = [
        (SystemKind::Emis, proxy),
        (SystemKind::Tpp, unused.clone()),
        (SystemKind::Vision, unused.clone()),
        (SystemKind::Microtest, unused),
    ];
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let mut cfg = gp_gateway::sandbox::config(
        addr,
        &format!("{}/personal-demographics/FHIR/R4", pds.base_url()),
        &urls,
        &population,
    )
    .unwrap();
    cfg.gateway.access.mode = AccessMode::Open;
    // Notifications sign with the sandbox's embedded key, which only the sandbox loads.
    cfg.gateway.notifications = None;
    let app = Arc::new(gp_gateway::app::App::build(&cfg).await.unwrap());
    let server = gp_gateway::server::start(app, listener, &cfg.gateway.server, None).unwrap();
    let emis_ods: Vec<&str> = population
        .practices
        .iter()
        .filter(|p| p.system == SystemKind::Emis)
        .map(|p| p.ods.as_str())
        .collect();
    let emis_patients = population
        .patients
        .iter()
        .filter(|p| emis_ods.contains(&p.practice.as_str()))
        .filter(|p| !p.flags.sensitive && !p.flags.dissent)
        .map(|p| p.nhs_number.clone())
        .collect();
    Rig {
        base: format!("http://{addr}/FHIR/R4"),
        recorded,
        emis_patients,
        _sims: vec![pds, emis],
        _server: server,
    }
}

impl Rig {
    /// Reads patient `n` (each one once: a cached read makes no native call).
    async fn read_patient(&self, n: usize, traceparent: Option<&str>) -> u16 {
        let mut req =
            http::Request::get(format!("{}/Patient/{}", self.base, self.emis_patients[n]))
                .header("accept", "application/fhir+json");
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let resp = tokio::time::timeout(
            PROMPT,
            client().request(req.body(Full::new(Bytes::new())).unwrap()),
        )
        .await
        .expect("answered promptly")
        .unwrap();
        resp.status().as_u16()
    }

    /// The one traceparent the GP system received since the last call.
    fn native_traceparent(&self) -> TraceContext {
        let seen = self.recorded.traceparents();
        self.recorded.clear();
        assert_eq!(seen.len(), 1, "one native call expected: {seen:?}");
        let raw = seen[0]
            .clone()
            .expect("the native call carries a traceparent");
        TraceContext::parse(&raw).unwrap_or_else(|| panic!("not a valid traceparent: {raw}"))
    }
}

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn caller() -> TraceContext {
    TraceContext::parse(CALLER).unwrap()
}

/// The GP system call continues the caller's trace: same trace id, the gateway's span
/// as parent. Without a (valid) caller traceparent a new trace is started: sampled only
/// when OpenTelemetry records it (`otel`).
async fn check_propagation(rig: &Rig, otel: bool) {
    assert_eq!(rig.read_patient(0, Some(CALLER)).await, 200);
    let native = rig.native_traceparent();
    assert_eq!(native.trace_id, caller().trace_id, "same trace");
    assert_ne!(
        native.span_id,
        caller().span_id,
        "the gateway's span is the parent"
    );
    assert!(native.sampled(), "the caller's sampling decision is kept");

    assert_eq!(rig.read_patient(1, None).await, 200);
    let fresh = rig.native_traceparent();
    assert_ne!(fresh.trace_id, caller().trace_id);
    assert_eq!(
        fresh.sampled(),
        otel,
        "a new trace is sampled only when recorded"
    );

    let upper = CALLER.to_ascii_uppercase();
    assert_eq!(rig.read_patient(2, Some(&upper)).await, 200);
    let restarted = rig.native_traceparent();
    assert_ne!(
        restarted.trace_id,
        caller().trace_id,
        "a malformed one is ignored"
    );
    assert_ne!(restarted.trace_id, fresh.trace_id);
}

#[tokio::test]
async fn the_gp_system_call_continues_the_callers_trace() {
    let rig = rig().await;
    check_propagation(&rig, false).await;
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1/traces")
}

// Current-thread runtime: the subscriber set for this thread sees every task's spans.
#[tokio::test(flavor = "current_thread")]
async fn with_opentelemetry_on_and_no_collector_requests_complete_and_stay_in_the_trace() {
    use tracing_subscriber::prelude::*;
    let telemetry = Telemetry::start(&TelemetryConfig {
        otlp_endpoint: Some(closed_port()),
        ..TelemetryConfig::default()
    })
    .unwrap()
    .expect("configured");
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(telemetry.layer()));

    let rig = rig().await;
    // The trace ids now come from OpenTelemetry's spans; propagation is unchanged.
    check_propagation(&rig, true).await;
    // More requests than one export batch, while exports fail.
    for n in 3..23 {
        assert_eq!(rig.read_patient(n, None).await, 200);
    }
    let sent = rig.recorded.traceparents();
    assert_eq!(sent.len(), 20);
    let ids: std::collections::HashSet<_> = sent.iter().map(|t| t.clone().unwrap()).collect();
    assert_eq!(ids.len(), 20, "each request has its own span");

    let shutdown = tokio::task::spawn_blocking(move || telemetry.shutdown(PROMPT));
    tokio::time::timeout(PROMPT * 2, shutdown)
        .await
        .expect("shutdown is bounded")
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn serve_with_a_collector_that_is_not_there_answers_and_exits_promptly() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let (config, public) = support::serve_config(
        dir.path(),
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"gp-gateway-test\"\n",
            closed_port()
        ),
    );
    let log_path = dir.path().join("gateway.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gp-gateway"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let client = client();
    let get = |path: &str| {
        let req = http::Request::get(format!("{public}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.request(req)
    };
    let mut up = false;
    for _ in 0..100 {
        if matches!(get("/_health").await, Ok(r) if r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "gateway did not come up: {}", log());
    // Enough requests, spread over a few export rounds, to see how failures are reported.
    for _ in 0..25 {
        let resp = tokio::time::timeout(PROMPT, get("/_health"))
            .await
            .expect("answered promptly")
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut exited = None;
    for _ in 0..150 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("gp-gateway did not exit within 15 s of SIGTERM: {}", log());
    };
    assert!(status.success(), "{status}: {}", log());

    let log = log();
    assert!(log.contains("exporting traces over OTLP/HTTP"), "{log}");
    // One warning for the missing collector, not a line per export attempt.
    let failing = log.matches("trace export failing").count();
    assert_eq!(failing, 1, "{log}");
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
    // Every line is still JSON.
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

/// A stand-in OTLP/HTTP collector: keeps each request's content type and body.
async fn fake_collector() -> (String, Arc<Mutex<Vec<(String, Bytes)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let log = log.clone();
                async move {
                    let content_type = req
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    #[allow(clippy::disallowed_methods)] // test-sized bodies
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    log.lock().unwrap().push((content_type, body));
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (format!("http://{addr}/v1/traces"), received)
}

#[tokio::test(flavor = "current_thread")]
async fn the_gateway_span_reaches_the_collector_in_the_callers_trace() {
    use tracing_subscriber::prelude::*;
    let (endpoint, received) = fake_collector().await;
    let telemetry = Telemetry::start(&TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        service_name: "gp-gateway-under-test".into(),
        ..TelemetryConfig::default()
    })
    .unwrap()
    .expect("configured");
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(telemetry.layer()));

    let rig = rig().await;
    assert_eq!(rig.read_patient(0, Some(CALLER)).await, 200);
    let native = rig.native_traceparent();
    // Flushed on shutdown, off this thread: the collector answers on this runtime.
    tokio::time::timeout(
        PROMPT * 2,
        tokio::task::spawn_blocking(move || telemetry.shutdown(PROMPT)),
    )
    .await
    .expect("shutdown is bounded")
    .unwrap();

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "nothing exported");
    let contains = |needle: &[u8]| {
        received
            .iter()
            .any(|(_, body)| body.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        received
            .iter()
            .all(|(ct, _)| ct == "application/x-protobuf")
    );
    assert!(contains(b"gp-gateway-under-test"), "service.name");
    // The span GP systems were told is their parent was exported, in the caller's trace,
    // with the caller's span as its parent.
    assert!(contains(&native.span_id), "the gateway span");
    assert!(contains(&caller().trace_id), "the caller's trace");
    assert!(contains(&caller().span_id), "the caller's span as parent");
}
