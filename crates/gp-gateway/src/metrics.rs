//! Prometheus metrics, served as text at `GET /metrics` on the admin listener
//! (`[admin] listen`), never on the suppliers' port.
//!
//! A small registry of atomic counters and fixed-bucket histograms keyed by label
//! values. Labels are bounded by construction: routes, status codes, GP systems, error
//! kinds, cache names and client ids (a registry of about twenty). Never a patient
//! identifier, a token or a practice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Latency buckets (seconds): a gateway hop is sub-millisecond, a GP system call can take seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations.
#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, slot) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

type Labels = Vec<(&'static str, String)>;

/// A family of series sharing a name, keyed by their label values.
#[derive(Debug, Default)]
struct Family<T> {
    series: RwLock<BTreeMap<Labels, Arc<T>>>,
}

impl<T: Default> Family<T> {
    fn get(&self, labels: Labels) -> Arc<T> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&labels)
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels)
            .or_default()
            .clone()
    }

    fn snapshot(&self) -> Vec<(Labels, Arc<T>)> {
        self.series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Every metric the gateway exports.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family<AtomicU64>,
    latency: Family<Histogram>,
    backend_errors: Family<AtomicU64>,
    backend_calls: Family<Histogram>,
    cache: Family<AtomicU64>,
    rate_limited: Family<AtomicU64>,
    audit_failures: AtomicU64,
    breaker_open: Family<AtomicU64>,
    connections_refused: Family<AtomicU64>,
    panics: AtomicU64,
}

impl Metrics {
    /// One answered request: its route (`read Patient`, `search-type Observation`,
    /// `token`, `none`), status and time taken.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get(vec![
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .fetch_add(1, Ordering::Relaxed);
        self.latency
            .get(vec![("route", route.to_owned())])
            .observe(elapsed);
    }

    /// One call to a GP system, and how it ended (`ok` or an error kind).
    pub fn backend_call(&self, system: &str, outcome: &str, elapsed: Duration) {
        self.backend_calls
            .get(vec![("system", system.to_owned())])
            .observe(elapsed);
        if outcome != "ok" {
            self.backend_errors
                .get(vec![
                    ("system", system.to_owned()),
                    ("kind", outcome.to_owned()),
                ])
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A cache lookup (`cache` = `patient`, `area`, `locator`).
    pub fn cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache
            .get(vec![
                ("cache", cache.to_owned()),
                ("result", result.to_owned()),
            ])
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request refused by a supplier's rate limit.
    pub fn rate_limited(&self, client_id: &str) {
        self.rate_limited
            .get(vec![("client_id", client_id.to_owned())])
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An audit row that could not be committed.
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A GP system's circuit breaker opened.
    pub fn breaker_opened(&self, system: &str) {
        self.breaker_open
            .get(vec![("system", system.to_owned())])
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A new connection closed at once because a cap (`limit` = `total` or `peer`) was
    /// reached on a listener (`main` or `admin`).
    pub fn connection_refused(&self, listener: &'static str, limit: &'static str) {
        self.connections_refused
            .get(vec![
                ("listener", listener.to_owned()),
                ("limit", limit.to_owned()),
            ])
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request whose handling panicked (answered 500 and audited).
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        counter(
            &mut out,
            "gp_gateway_requests_total",
            "Requests answered, by route and HTTP status.",
            &self.requests,
        );
        histogram(
            &mut out,
            "gp_gateway_request_duration_seconds",
            "Time from request to response, by route.",
            &self.latency,
        );
        histogram(
            &mut out,
            "gp_gateway_backend_call_duration_seconds",
            "Time of each call to a GP system, by system.",
            &self.backend_calls,
        );
        counter(
            &mut out,
            "gp_gateway_backend_errors_total",
            "Failed GP system calls, by system and kind.",
            &self.backend_errors,
        );
        counter(
            &mut out,
            "gp_gateway_cache_requests_total",
            "Cache lookups by cache and result (hit ratio = hit / (hit + miss)).",
            &self.cache,
        );
        counter(
            &mut out,
            "gp_gateway_rate_limited_total",
            "Requests refused by a supplier's rate limit.",
            &self.rate_limited,
        );
        counter(
            &mut out,
            "gp_gateway_circuit_opened_total",
            "Times a GP system's circuit breaker opened.",
            &self.breaker_open,
        );
        counter(
            &mut out,
            "gp_gateway_connections_refused_total",
            "New connections closed at once by a connection cap, by listener and cap.",
            &self.connections_refused,
        );
        plain_counter(
            &mut out,
            "gp_gateway_audit_failures_total",
            "Audit rows that could not be committed.",
            &self.audit_failures,
        );
        plain_counter(
            &mut out,
            "gp_gateway_panics_total",
            "Requests whose handling panicked (answered 500, audited).",
            &self.panics,
        );
        let _ = writeln!(
            out,
            "# HELP gp_gateway_unmapped_codes_total Native codes answered without a SNOMED CT mapping, by scheme.\n# TYPE gp_gateway_unmapped_codes_total counter"
        );
        for (name, scheme) in [
            ("readv2", gp_adapter::terminology::CodeScheme::ReadV2),
            ("ctv3", gp_adapter::terminology::CodeScheme::Ctv3),
            ("emis", gp_adapter::terminology::CodeScheme::EmisLocal),
        ] {
            let _ = writeln!(
                out,
                "gp_gateway_unmapped_codes_total{{scheme=\"{name}\"}} {}",
                gp_adapter::terminology::unmapped_count(scheme)
            );
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn counter(out: &mut String, name: &str, help: &str, family: &Family<AtomicU64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in family.snapshot() {
        let _ = writeln!(
            out,
            "{name}{} {}",
            label_text(&labels, None),
            v.load(Ordering::Relaxed)
        );
    }
}

fn plain_counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        value.load(Ordering::Relaxed)
    );
}

fn histogram(out: &mut String, name: &str, help: &str, family: &Family<Histogram>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in family.snapshot() {
        for (bound, slot) in BUCKETS.iter().zip(&h.counts) {
            let le = bound.to_string();
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                label_text(&labels, Some(("le", &le))),
                slot.load(Ordering::Relaxed)
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{} {count}",
            label_text(&labels, Some(("le", "+Inf")))
        );
        let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", label_text(&labels, None));
        let _ = writeln!(out, "{name}_count{} {count}", label_text(&labels, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
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
        assert!(text.contains("gp_gateway_unmapped_codes_total{scheme=\"ctv3\"}"));
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
