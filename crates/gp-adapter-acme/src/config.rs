//! `[systems.acme]`: where Acme's native API is and how long to wait for it. Checked
//! purely (no network) so `gp-gateway check-config` can run it in CI; the defaults,
//! limits and messages are the shared [`gp_adapter::endpoint`] ones.

use std::path::PathBuf;

use gp_adapter::endpoint::{self, AuthConfig, Endpoint, EndpointError};
use serde::Deserialize;

/// Where and how to reach Acme Clinical's native API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Base URL of the API (without `/acme/v1`), e.g. `http://127.0.0.1:9005`.
    pub base_url: String,
    /// TCP connect timeout.
    #[serde(default = "endpoint::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, headers and body).
    #[serde(default = "endpoint::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest native response accepted, in bytes.
    #[serde(default = "endpoint::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// CA bundle (PEM) an `https://` base URL's certificate must chain to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `[systems.acme.auth]`: API key, OAuth client credentials or mutual TLS.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

impl AcmeConfig {
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

    /// Checks the config without any I/O; the first problem found, named `acme.<field>`.
    pub fn validate(&self) -> Result<(), EndpointError> {
        self.endpoint().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_unknown_fields_are_refused_and_problems_name_the_field() {
        let c: AcmeConfig =
            serde_json::from_str(r#"{"base_url":"http://127.0.0.1:9005"}"#).unwrap();
        assert_eq!(c, AcmeConfig::new("http://127.0.0.1:9005"));
        assert!(c.validate().is_ok());
        let typo = serde_json::from_str::<AcmeConfig>(r#"{"base_url":"http://h","timeout":1}"#);
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `timeout`")
        );
        let zero = AcmeConfig {
            request_timeout_ms: 0,
            ..c
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "acme.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
    }
}
