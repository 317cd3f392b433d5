//! `[notifications]`: subscriptions and their deliveries. Absent: no Subscription is
//! offered, no change log is polled.

use std::path::PathBuf;

use serde::Deserialize;

/// `[notifications]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The Ed25519 private key (PKCS#8 PEM) deliveries are signed with, relative to the
    /// config file. Its public half is published in the JWKS under `signing_kid`.
    pub signing_key: PathBuf,
    /// The key's id in the JWKS (`webhook-…`: apart from the access-token keys).
    #[serde(default = "default_kid")]
    pub signing_kid: String,
    /// How often each practice's change log is read (ms).
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// How long one delivery may take, connect to answer (ms); a subscription's
    /// `backport-timeout` may only shorten it.
    #[serde(default = "default_timeout")]
    pub delivery_timeout_ms: u64,
    /// Deliveries in flight at once from this replica (one per subscription at a time).
    #[serde(default = "default_concurrency")]
    pub max_concurrent_deliveries: usize,
    /// Failed deliveries in a row after which a subscription's status is `error` (it
    /// is still retried, and back to `active` on the next success).
    #[serde(default = "default_failures")]
    pub failures_before_error: u32,
    /// The longest wait between retries (ms): the backoff doubles from one second to this.
    #[serde(default = "default_backoff")]
    pub max_backoff_ms: u64,
    /// How long a replica holds a subscription it delivers for (ms): a replica that dies
    /// mid-delivery hands its subscriptions over after at most this.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// Trust roots for suppliers' HTTPS endpoints (PEM bundle).
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// Subscriptions one supplier may hold.
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions_per_supplier: usize,
    /// SANDBOX ONLY: endpoints may be `http://` on loopback (`gp-gateway serve` refuses
    /// it). Otherwise every endpoint is `https://` and resolves to public addresses only.
    #[serde(default)]
    pub allow_loopback: bool,
}

fn default_kid() -> String {
    "webhook-1".into()
}
fn default_poll() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    5_000
}
fn default_concurrency() -> usize {
    32
}
fn default_failures() -> u32 {
    5
}
fn default_backoff() -> u64 {
    10 * 60 * 1000
}
fn default_lease() -> u64 {
    30_000
}
fn default_ca_file() -> PathBuf {
    PathBuf::from("/etc/ssl/certs/ca-certificates.crt")
}
fn default_max_subscriptions() -> usize {
    20
}

impl NotificationsConfig {
    /// Pure checks for `check-config`: each problem as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let kid_ok = (1..=64).contains(&self.signing_kid.len())
            && self
                .signing_kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !kid_ok {
            out.push((
                "notifications.signing_kid",
                "must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let ranges: [(&'static str, u64, u64, u64); 5] = [
            (
                "notifications.poll_interval_ms",
                self.poll_interval_ms,
                100,
                3_600_000,
            ),
            (
                "notifications.delivery_timeout_ms",
                self.delivery_timeout_ms,
                100,
                60_000,
            ),
            (
                "notifications.max_backoff_ms",
                self.max_backoff_ms,
                1_000,
                86_400_000,
            ),
            ("notifications.lease_ms", self.lease_ms, 1_000, 600_000),
            (
                "notifications.failures_before_error",
                u64::from(self.failures_before_error),
                1,
                1_000,
            ),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                out.push((key, format!("must be between {low} and {high}")));
            }
        }
        if self.lease_ms <= self.delivery_timeout_ms * 2 {
            out.push((
                "notifications.lease_ms",
                "must be more than twice delivery_timeout_ms (a delivery must end well within its lease)".into(),
            ));
        }
        if !(1..=1_024).contains(&self.max_concurrent_deliveries) {
            out.push((
                "notifications.max_concurrent_deliveries",
                "must be between 1 and 1024".into(),
            ));
        }
        if !(1..=1_000).contains(&self.max_subscriptions_per_supplier) {
            out.push((
                "notifications.max_subscriptions_per_supplier",
                "must be between 1 and 1000".into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> NotificationsConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_each_bad_value_is_named() {
        let ok = config("signing_key = \"k.pem\"");
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert!(
            !ok.allow_loopback,
            "loopback endpoints are the sandbox's only"
        );
        let bad = config(
            "signing_key = \"k.pem\"\nsigning_kid = \"a b\"\npoll_interval_ms = 1\nlease_ms = 5000\ndelivery_timeout_ms = 5000\nmax_concurrent_deliveries = 0",
        );
        let keys: Vec<&str> = bad.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "notifications.signing_kid",
                "notifications.poll_interval_ms",
                "notifications.lease_ms",
                "notifications.max_concurrent_deliveries"
            ]
        );
        assert!(toml::from_str::<NotificationsConfig>("signing_key = \"k\"\nnope = 1").is_err());
    }
}
