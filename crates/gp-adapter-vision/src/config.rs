//! Vision adapter configuration: one serde section, checked purely (no network) so
//! `gp-gateway check-config` can run it in CI. Defaults, limits and checks are the
//! shared [`gp_adapter::endpoint`] ones.

use std::path::PathBuf;

use gp_adapter::endpoint::{self, AuthConfig, Endpoint};
use serde::{Deserialize, Serialize};

pub use gp_adapter::endpoint::{MAX_RECORD_BYTES, MAX_TIMEOUT_MS};

/// Where and how to reach a Vision native extract API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionConfig {
    /// Base URL of the Vision extract API, e.g. `http://127.0.0.1:9001`.
    pub base_url: String,
    /// TCP connect timeout.
    #[serde(default = "endpoint::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, headers and body).
    #[serde(default = "endpoint::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest extract body accepted per call, in bytes (a whole journal, all pages together, is held to the same cap).
    #[serde(default = "endpoint::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// CA bundle (PEM) an `https://` base URL's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `[systems.<id>.auth]`: API key, OAuth client credentials or mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

/// What is wrong with a [`VisionConfig`]; messages are prefixed `vision.`.
pub type VisionConfigError = endpoint::EndpointError;

impl VisionConfig {
    /// A config for `base_url` with every default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout_ms: endpoint::DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: endpoint::DEFAULT_REQUEST_TIMEOUT_MS,
            max_record_bytes: endpoint::DEFAULT_MAX_RECORD_BYTES,
            ca_file: None,
            auth: None,
        }
    }

    /// The endpoint settings, to validate or build the native client from.
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            system: crate::SYSTEM,
            base_url: &self.base_url,
            connect_timeout_ms: self.connect_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            max_record_bytes: self.max_record_bytes,
            ca_file: self.ca_file.as_deref(),
            auth: self.auth.as_ref(),
        }
    }

    /// Checks the config without any I/O; the first problem found is returned.
    pub fn validate(&self) -> Result<(), VisionConfigError> {
        self.endpoint().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_fields_are_refused() {
        let c: VisionConfig =
            serde_json::from_str(r#"{"base_url":"http://127.0.0.1:9001"}"#).unwrap();
        assert_eq!(c, VisionConfig::new("http://127.0.0.1:9001"));
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
            serde_json::from_str::<VisionConfig>(r#"{"base_url":"http://h","timeout":1}"#).is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = VisionConfig::new("ftp://vision.example");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("vision.base_url: base URL 'ftp://vision.example'")
        );
        c.base_url = "http://127.0.0.1:1".into();
        c.request_timeout_ms = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "vision.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
        // The other checks are gp_adapter::endpoint's, tested there.
    }
}
