//! Prometheus metrics, served as text at `GET /metrics` on the admin listener
//! (`[admin] listen`), never on the suppliers' port.
//!
//! Families of counters and histograms from prometheus-client, rendered in the
//! Prometheus text format (0.0.4). Labels are bounded by construction: routes, status
//! codes, GP systems, error kinds, cache names and client ids (a registry of about
//! twenty). Never a patient identifier, a token or a practice.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets (seconds): a gateway hop is sub-millisecond, a GP system call can take seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Histograms,
    backend_errors: Family<Labels, Counter>,
    backend_calls: Histograms,
    cache: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    audit_failures: Counter,
    breaker_open: Family<Labels, Counter>,
    connections_refused: Family<Labels, Counter>,
    panics: Counter,
    notifications: Family<Labels, Counter>,
    cursor_resets: Counter,
    terminology_reloads: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let histograms = || Histograms::new_with_constructor(latency_histogram);
        let m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            latency: histograms(),
            backend_errors: Family::default(),
            backend_calls: histograms(),
            cache: Family::default(),
            rate_limited: Family::default(),
            audit_failures: Counter::default(),
            breaker_open: Family::default(),
            connections_refused: Family::default(),
            panics: Counter::default(),
            notifications: Family::default(),
            cursor_resets: Counter::default(),
            terminology_reloads: Family::default(),
        };
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "gp_gateway_requests",
            "Requests answered, by route and HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "gp_gateway_request_duration_seconds",
            "Time from request to response, by route",
            m.latency.clone(),
        );
        registry.register(
            "gp_gateway_backend_call_duration_seconds",
            "Time of each call to a GP system, by system",
            m.backend_calls.clone(),
        );
        registry.register(
            "gp_gateway_backend_errors",
            "Failed GP system calls, by system and kind",
            m.backend_errors.clone(),
        );
        registry.register(
            "gp_gateway_cache_requests",
            "Cache lookups by cache and result (hit ratio = hit / (hit + miss))",
            m.cache.clone(),
        );
        registry.register(
            "gp_gateway_rate_limited",
            "Requests refused by a supplier's rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "gp_gateway_circuit_opened",
            "Times a GP system's circuit breaker opened",
            m.breaker_open.clone(),
        );
        registry.register(
            "gp_gateway_connections_refused",
            "New connections closed at once by a connection cap, by listener and cap",
            m.connections_refused.clone(),
        );
        registry.register(
            "gp_gateway_audit_failures",
            "Audit rows that could not be committed",
            m.audit_failures.clone(),
        );
        registry.register(
            "gp_gateway_panics",
            "Requests whose handling panicked (answered 500, audited)",
            m.panics.clone(),
        );
        registry.register(
            "gp_gateway_notifications",
            "Notification deliveries attempted, by outcome (delivered, failed)",
            m.notifications.clone(),
        );
        registry.register(
            "gp_gateway_change_cursor_resets",
            "Change-log cursors a GP system no longer honoured, started again from its end (changes in between missed)",
            m.cursor_resets.clone(),
        );
        registry.register(
            "gp_gateway_terminology_reloads",
            "Reloads of the terminology map files, by result (ok, refused: the running maps kept)",
            m.terminology_reloads.clone(),
        );
        registry.register_collector(Box::new(UnmappedCodes));
        Self { registry, ..m }
    }
}

/// The adapters' counts of native codes answered without a SNOMED CT mapping, by GP
/// system and scheme, read at each scrape.
#[derive(Debug)]
struct UnmappedCodes;

impl Collector for UnmappedCodes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "gp_gateway_unmapped_codes",
            "Native codes answered without a SNOMED CT mapping, by GP system and scheme",
            None,
            MetricType::Counter,
        )?;
        for (system, scheme, n) in gp_adapter::terminology::unmapped_counts() {
            ConstCounter::new(n)
                .encode(family.encode_family(&[("system", system), ("scheme", scheme.label())])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "gp_gateway_terminology_codes",
            "Codes the running terminology maps map to SNOMED CT, by scheme and source (embedded or files)",
            None,
            MetricType::Gauge,
        )?;
        let maps = gp_adapter::terminology::current();
        for scheme in gp_adapter::terminology::MAPPED_SCHEMES {
            let source = match maps.source(scheme) {
                Some(gp_adapter::terminology::Source::Files(_)) => "files",
                _ => "embedded",
            };
            let n = i64::try_from(maps.len(scheme)).unwrap_or(i64::MAX);
            ConstGauge::new(n)
                .encode(family.encode_family(&[("scheme", scheme.label()), ("source", source)])?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// One answered request: its route (`read Patient`, `search-type Observation`,
    /// `token`, `none`), status and time taken.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// One call to a GP system, and how it ended (`ok` or an error kind).
    pub fn backend_call(&self, system: &str, outcome: &str, elapsed: Duration) {
        self.backend_calls
            .get_or_create(&vec![("system", system.to_owned())])
            .observe(elapsed.as_secs_f64());
        if outcome != "ok" {
            self.backend_errors
                .get_or_create(&vec![
                    ("system", system.to_owned()),
                    ("kind", outcome.to_owned()),
                ])
                .inc();
        }
    }

    /// A cache lookup (`cache` = `patient`, `area`, `locator`).
    pub fn cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache
            .get_or_create(&vec![
                ("cache", cache.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// A request refused by a supplier's rate limit.
    pub fn rate_limited(&self, client_id: &str) {
        self.rate_limited
            .get_or_create(&vec![("client_id", client_id.to_owned())])
            .inc();
    }

    /// An audit row that could not be committed.
    /// A notification delivery ended: delivered (2xx) or failed.
    pub fn notification(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// A GP system refused a change-log cursor; polling restarted from its end.
    pub fn change_cursor_reset(&self) {
        self.cursor_resets.inc();
    }

    /// A reload of the terminology maps: `ok`, or refused (the running maps kept).
    pub fn terminology_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.terminology_reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    /// A GP system's circuit breaker opened.
    pub fn breaker_opened(&self, system: &str) {
        self.breaker_open
            .get_or_create(&vec![("system", system.to_owned())])
            .inc();
    }

    /// A new connection closed at once because a cap (`limit` = `total` or `peer`) was
    /// reached on a listener (`main` or `admin`).
    pub fn connection_refused(&self, listener: &'static str, limit: &'static str) {
        self.connections_refused
            .get_or_create(&vec![
                ("listener", listener.to_owned()),
                ("limit", limit.to_owned()),
            ])
            .inc();
    }

    /// A request whose handling panicked (answered 500 and audited).
    pub fn panicked(&self) {
        self.panics.inc();
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be rendered");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        // One CTV3 code SystmOne recorded that no map knows.
        gp_adapter::terminology::coded(
            gp_adapter::GpSystem::new("tpp", "TPP SystmOne"),
            gp_adapter::terminology::CodeScheme::Ctv3,
            "Zz999",
            "Unknown",
            None,
        );
        m.request("read Patient", 200, Duration::from_micros(800));
        m.request("read Patient", 200, Duration::from_millis(30));
        m.request("read Patient", 404, Duration::from_micros(300));
        m.cache("patient", true);
        m.cache("patient", false);
        m.backend_call("emis", "timeout", Duration::from_secs(2));
        m.rate_limited("demo-consult");
        m.panicked();
        let text = m.render();
        assert!(text.contains("\ngp_gateway_panics_total 1\n"), "{text}");
        assert!(
            text.contains("gp_gateway_requests_total{route=\"read Patient\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gp_gateway_requests_total{route=\"read Patient\",status=\"404\"} 1")
        );
        assert!(text.contains(
            "gp_gateway_request_duration_seconds_bucket{route=\"read Patient\",le=\"0.001\"} 2"
        ));
        assert!(text.contains(
            "gp_gateway_request_duration_seconds_bucket{route=\"read Patient\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains("gp_gateway_request_duration_seconds_count{route=\"read Patient\"} 3")
        );
        assert!(
            text.contains("gp_gateway_cache_requests_total{cache=\"patient\",result=\"hit\"} 1")
        );
        assert!(
            text.contains("gp_gateway_backend_errors_total{system=\"emis\",kind=\"timeout\"} 1")
        );
        assert!(text.contains("gp_gateway_rate_limited_total{client_id=\"demo-consult\"} 1"));
        assert!(text.contains("gp_gateway_unmapped_codes_total{system=\"tpp\",scheme=\"ctv3\"} 1"));
        assert!(
            text.contains("gp_gateway_terminology_codes{scheme=\"readv2\",source=\"embedded\"} ")
        );
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
