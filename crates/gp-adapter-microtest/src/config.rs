//! Microtest Evolution adapter configuration: one serde section, checked purely (no network) so
//! `gp-gateway check-config` can run it in CI.

use serde::{Deserialize, Serialize};

/// Where and how to reach a Microtest Evolution native API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrotestConfig {
    /// Base URL of the Evolution v2 API (without `/evolution/v2`), e.g. `http://127.0.0.1:9004`.
    pub base_url: String,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, headers and body).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest native response (one document or one page of entries) accepted, in bytes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_request_timeout_ms() -> u64 {
    5000
}
fn default_max_record_bytes() -> usize {
    16 * 1024 * 1024
}

/// Longest timeout accepted: beyond this a hung GP system ties up gateway capacity.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Largest record cap accepted (a whole GP record is a few MB at most).
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// What is wrong with a [`MicrotestConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MicrotestConfigError {
    #[error("microtest.base_url: {0}")]
    BaseUrl(#[from] gp_adapter::native::NativeClientError),
    #[error("microtest.{field} is {value} ms; it must be between 1 and {MAX_TIMEOUT_MS}")]
    TimeoutOutOfRange { field: &'static str, value: u64 },
    #[error(
        "microtest.connect_timeout_ms ({connect}) must not exceed microtest.request_timeout_ms ({request})"
    )]
    ConnectExceedsRequest { connect: u64, request: u64 },
    #[error("microtest.max_record_bytes is {0}; it must be between 1024 and {MAX_RECORD_BYTES}")]
    RecordCapOutOfRange(usize),
}

impl MicrotestConfig {
    /// A config for `base_url` with every default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout_ms: default_connect_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_record_bytes: default_max_record_bytes(),
        }
    }

    /// Checks the config without any I/O; the first problem found is returned.
    pub fn validate(&self) -> Result<(), MicrotestConfigError> {
        gp_adapter::native::check_base_url(&self.base_url)?;
        for (field, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == 0 || value > MAX_TIMEOUT_MS {
                return Err(MicrotestConfigError::TimeoutOutOfRange { field, value });
            }
        }
        if self.connect_timeout_ms > self.request_timeout_ms {
            return Err(MicrotestConfigError::ConnectExceedsRequest {
                connect: self.connect_timeout_ms,
                request: self.request_timeout_ms,
            });
        }
        if !(1024..=MAX_RECORD_BYTES).contains(&self.max_record_bytes) {
            return Err(MicrotestConfigError::RecordCapOutOfRange(
                self.max_record_bytes,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_fields_are_refused() {
        let c: MicrotestConfig =
            serde_json::from_str(r#"{"base_url":"http://127.0.0.1:9004"}"#).unwrap();
        assert_eq!(c, MicrotestConfig::new("http://127.0.0.1:9004"));
        assert_eq!(
            (
                c.connect_timeout_ms,
                c.request_timeout_ms,
                c.max_record_bytes
            ),
            (1000, 5000, 16 * 1024 * 1024)
        );
        assert!(c.validate().is_ok());
        assert!(
            serde_json::from_str::<MicrotestConfig>(r#"{"base_url":"http://h","timeout":1}"#)
                .is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = MicrotestConfig::new("https://microtest.example");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("microtest.base_url: base URL 'https://microtest.example'")
        );
        c.base_url = "http://127.0.0.1:1".into();
        c.request_timeout_ms = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "microtest.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
        c.request_timeout_ms = 500;
        assert_eq!(
            c.validate().unwrap_err(),
            MicrotestConfigError::ConnectExceedsRequest {
                connect: 1000,
                request: 500
            }
        );
        c.request_timeout_ms = 5000;
        c.max_record_bytes = 10;
        assert_eq!(
            c.validate().unwrap_err(),
            MicrotestConfigError::RecordCapOutOfRange(10)
        );
    }
}
