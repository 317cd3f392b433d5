//! Distributed tracing: the W3C trace context every request continues and hands on to
//! its GP system calls (always, with or without a collector), and, when `[telemetry]`
//! names one, the OpenTelemetry export of the gateway's spans over OTLP/HTTP.
//!
//! Export never sits on a request's path: finished spans go to a bounded queue that a
//! batch processor drains on its own thread; when the queue is full they are dropped.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use serde::Deserialize;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// `[telemetry]`: OpenTelemetry traces. Without `otlp_endpoint` nothing is exported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP (protobuf) traces endpoint, used as is:
    /// `http://otel-collector:4318/v1/traces`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces recorded (0.0–1.0). A caller's sampling decision is followed.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
        }
    }
}

fn default_service_name() -> String {
    "gp-gateway".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}

impl TelemetryConfig {
    /// Problems with these settings, as (key, problem). Pure: nothing is contacted.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(url) = &self.otlp_endpoint {
            let well_formed = url.len() > "http://".len()
                && !url.chars().any(|c| c.is_whitespace() || c.is_control())
                && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
            if url.starts_with("https://") {
                // The exporter is built without TLS (kept lean); an https URL would fail at
                // every export, silently for requests. A local collector or sidecar forwards.
                out.push((
                    "telemetry.otlp_endpoint",
                    format!(
                        "'{url}': the OTLP exporter has no TLS; send to a collector over http:// (a local agent or sidecar)"
                    ),
                ));
            } else if !url.starts_with("http://") || !well_formed {
                out.push((
                    "telemetry.otlp_endpoint",
                    format!(
                        "'{url}' is not an http URL such as http://otel-collector:4318/v1/traces"
                    ),
                ));
            }
        }
        let name = &self.service_name;
        if name.is_empty() || name.len() > 100 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            out.push((
                "telemetry.service_name",
                "must be 1 to 100 printable characters without spaces".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            out.push((
                "telemetry.sample_ratio",
                format!("{} is not between 0.0 and 1.0", self.sample_ratio),
            ));
        }
        out
    }
}

/// A W3C trace context (`traceparent`, version 00): which trace a span belongs to, its
/// id, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// The only flag version 00 defines; the others are zeroed when passed on.
const SAMPLED: u8 = 0x01;

impl TraceContext {
    /// Parses a `traceparent` strictly: version `00`, exactly 55 characters, lowercase
    /// hex, non-zero trace and parent ids. Anything else is `None` (start a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let b = header.as_bytes();
        if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        if &b[..2] != b"00" {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flags = [0u8; 1];
        hex_into(&b[3..35], &mut trace_id)?;
        hex_into(&b[36..52], &mut span_id)?;
        hex_into(&b[53..55], &mut flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: flags[0],
        })
    }

    /// The caller's context from a request's `traceparent`, when present and valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all("traceparent").iter();
        let first = values.next()?;
        // Two traceparents cannot both be the parent: ignore them, as W3C asks.
        if values.next().is_some() {
            return None;
        }
        Self::parse(first.to_str().ok()?)
    }

    /// A context for a span of this trace whose parent is `self`: same trace id and
    /// sampling decision, a new span id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_span_id(),
            flags: self.flags & SAMPLED,
        }
    }

    /// The first span of a new trace. Not sampled: nothing records it unless
    /// OpenTelemetry is on, and then its own ids are used instead.
    pub fn root() -> Self {
        Self {
            trace_id: *uuid::Uuid::new_v4().as_bytes(),
            span_id: random_span_id(),
            flags: 0,
        }
    }

    /// The context of a request's span: a child of the caller's, or a new trace.
    pub fn for_request(headers: &HeaderMap) -> Self {
        Self::from_headers(headers).map_or_else(Self::root, |parent| parent.child())
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    fn from_otel(sc: &SpanContext) -> Option<Self> {
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8() & SAMPLED,
        })
    }

    fn to_otel_remote(self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags & SAMPLED),
            true,
            TraceState::default(),
        )
    }
}

/// The `traceparent` header value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags & SAMPLED
        )
    }
}

fn random_span_id() -> [u8; 8] {
    let u = uuid::Uuid::new_v4();
    let mut id = [0u8; 8];
    // Bytes 0..8 of a v4 UUID: 60 random bits, and byte 6 holds the version, so never zero.
    id.copy_from_slice(&u.as_bytes()[..8]);
    id
}

fn hex_into(src: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Ties a request's span to its trace. `own` is the context minted without
/// OpenTelemetry ([`TraceContext::for_request`]). With OpenTelemetry on, the span is
/// parented to the caller's `traceparent` and the span's own ids are returned instead,
/// so what is exported and what GP systems receive agree. The trace id is recorded in
/// the span's `trace_id` field either way, for log correlation.
pub fn attach(span: &tracing::Span, headers: &HeaderMap, own: TraceContext) -> TraceContext {
    let own = otel_context(span, TraceContext::from_headers(headers)).unwrap_or(own);
    span.record("trace_id", tracing::field::display(own.trace_id_hex()));
    own
}

fn otel_context(span: &tracing::Span, parent: Option<TraceContext>) -> Option<TraceContext> {
    if let Some(parent) = parent {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent.to_otel_remote());
        // No OpenTelemetry layer (or the span is disabled): the minted context stands.
        span.set_parent(cx).ok()?;
    }
    TraceContext::from_otel(span.context().span().span_context())
}

/// Export settings that are not configurable (yet): generous for a collector next door,
/// short enough that a silent one costs little.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
const SCHEDULED_DELAY: Duration = Duration::from_secs(2);
const MAX_QUEUE: usize = 4096;
/// How often a collector that keeps failing is reported again.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: cannot build the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// A running OpenTelemetry pipeline. Call [`Telemetry::shutdown`] on exit to flush.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Telemetry {
    /// Builds the exporter and its batch thread when `otlp_endpoint` is set; `None`
    /// otherwise. Nothing is contacted until the first batch is sent.
    pub fn start(cfg: &TelemetryConfig) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = cfg.otlp_endpoint.clone() else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let exporter = Reporting {
            inner: exporter,
            endpoint: endpoint.clone(),
            state: Mutex::new(ExportState::default()),
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUE)
            .with_scheduled_delay(SCHEDULED_DELAY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(cfg.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider, endpoint }))
    }

    /// The tracing layer that turns the gateway's spans into OpenTelemetry spans.
    /// Only the gateway's own crates (`gp_*`) are traced: the exporter's HTTP client
    /// and other libraries stay out, so export can never feed itself.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("gp-gateway");
        let targets = Targets::new()
            .with_default(LevelFilter::OFF)
            .with_target("gp_", LevelFilter::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(targets)
    }

    /// Where spans are sent.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports what is queued and stops the batch thread, waiting at most `timeout`
    /// (a collector that never answers must not hold up the exit).
    pub fn shutdown(self, timeout: Duration) {
        match self.provider.shutdown_with_timeout(timeout) {
            Ok(()) => tracing::debug!("telemetry flushed"),
            Err(e) => {
                tracing::warn!(error = %e, endpoint = %self.endpoint, "telemetry not fully flushed on exit")
            }
        }
    }
}

/// Consecutive export failures, reported once and then at most every [`REPORT_EVERY`].
#[derive(Debug, Default)]
struct ExportState {
    failing_since: Option<Instant>,
    last_report: Option<Instant>,
    dropped: u64,
}

/// Wraps the OTLP exporter so a missing collector is one warning, not a log flood.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    endpoint: String,
    state: Mutex<ExportState>,
}

impl<E> Reporting<E> {
    fn report(&self, result: &OTelSdkResult, spans: usize) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => {
                if s.failing_since.take().is_some() {
                    tracing::info!(endpoint = %self.endpoint, dropped_spans = s.dropped, "trace export recovered");
                }
                s.dropped = 0;
                s.last_report = None;
            }
            Err(error) => {
                s.dropped += spans as u64;
                let now = Instant::now();
                let first = s.failing_since.is_none();
                if first {
                    s.failing_since = Some(now);
                }
                if first || s.last_report.is_none_or(|t| now - t >= REPORT_EVERY) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        dropped_spans = s.dropped,
                        "trace export failing: spans are dropped (requests are not affected); reported again at most once a minute"
                    );
                    s.last_report = Some(now);
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.report(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let tc = TraceContext::parse(VALID).unwrap();
        assert_eq!(tc.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(tc.span_id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
        assert!(tc.sampled());
        assert_eq!(tc.to_string(), VALID);
        let unsampled = VALID.replace("-01", "-00");
        assert!(!TraceContext::parse(&unsampled).unwrap().sampled());
    }

    #[test]
    fn other_versions_are_refused() {
        for v in ["01", "ff", "0g"] {
            let h = format!("{v}{}", &VALID[2..]);
            assert_eq!(TraceContext::parse(&h), None, "{h}");
        }
    }

    #[test]
    fn uppercase_hex_is_refused() {
        assert_eq!(TraceContext::parse(&VALID.to_ascii_uppercase()), None);
        let mixed = VALID.replace("0af7", "0AF7");
        assert_eq!(TraceContext::parse(&mixed), None);
        assert_eq!(TraceContext::parse(&VALID.replace("-01", "-0A")), None);
    }

    #[test]
    fn all_zero_ids_are_refused() {
        let zero_trace = format!("00-{}-b7ad6b7169203331-01", "0".repeat(32));
        let zero_span = format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", "0".repeat(16));
        assert_eq!(TraceContext::parse(&zero_trace), None);
        assert_eq!(TraceContext::parse(&zero_span), None);
    }

    #[test]
    fn wrong_lengths_and_separators_are_refused() {
        let cases = [
            "",
            "00",
            &VALID[..54],
            &format!("{VALID}0"),
            &format!("{VALID}-"),
            // A field one digit short, another one long: same total length.
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-101",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
        ];
        for h in cases {
            assert_eq!(TraceContext::parse(h), None, "{h:?}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_sampling_with_a_new_span_id() {
        let parent = TraceContext::parse(VALID).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.span_id, parent.span_id);
        assert_ne!(child.span_id, [0; 8]);
        assert!(child.sampled());
        // Undefined flags are not passed on.
        let odd = TraceContext::parse(&VALID.replace("-01", "-ff")).unwrap();
        assert_eq!(odd.child().flags, 0x01);
        // What we send is what we accept.
        assert_eq!(TraceContext::parse(&child.to_string()), Some(child));
    }

    #[test]
    fn a_request_without_a_valid_traceparent_starts_a_new_trace() {
        let mut headers = HeaderMap::new();
        let a = TraceContext::for_request(&headers);
        let b = TraceContext::for_request(&headers);
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.trace_id, [0; 16]);
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));

        headers.insert("traceparent", VALID.to_ascii_uppercase().parse().unwrap());
        let c = TraceContext::for_request(&headers);
        assert_ne!(c.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");

        headers.insert("traceparent", VALID.parse().unwrap());
        let d = TraceContext::for_request(&headers);
        assert_eq!(d.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");

        headers.append("traceparent", VALID.parse().unwrap());
        assert_eq!(TraceContext::from_headers(&headers), None);
    }

    #[test]
    fn without_opentelemetry_attach_keeps_the_minted_context() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", VALID.parse().unwrap());
        let own = TraceContext::for_request(&headers);
        let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
        assert_eq!(attach(&span, &headers, own), own);
    }

    #[test]
    fn config_problems_are_named() {
        assert!(TelemetryConfig::default().problems().is_empty());
        let ok = TelemetryConfig {
            otlp_endpoint: Some("http://otel-collector:4318/v1/traces".into()),
            ..TelemetryConfig::default()
        };
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        for (url, key) in [
            (
                "https://collector:4318/v1/traces",
                "telemetry.otlp_endpoint",
            ),
            ("collector:4318", "telemetry.otlp_endpoint"),
            ("http://", "telemetry.otlp_endpoint"),
            ("http://a b/v1/traces", "telemetry.otlp_endpoint"),
        ] {
            let c = TelemetryConfig {
                otlp_endpoint: Some(url.into()),
                ..TelemetryConfig::default()
            };
            assert_eq!(c.problems().first().map(|p| p.0), Some(key), "{url}");
        }
        for ratio in [-0.1, 1.5, f64::NAN] {
            let c = TelemetryConfig {
                sample_ratio: ratio,
                ..TelemetryConfig::default()
            };
            assert_eq!(c.problems()[0].0, "telemetry.sample_ratio");
        }
        let c = TelemetryConfig {
            service_name: "gp gateway".into(),
            ..TelemetryConfig::default()
        };
        assert_eq!(c.problems()[0].0, "telemetry.service_name");
    }
}
