//! TPP SystmOne adapter configuration: one serde section, checked purely (no network) so
//! `gp-gateway check-config` can run it in CI. The endpoint defaults, limits and checks
//! are the shared [`gp_adapter::endpoint`] ones; `page_size` is TPP's own.

use std::path::PathBuf;

use gp_adapter::endpoint::{self, AuthConfig, Endpoint, EndpointError};
use serde::{Deserialize, Serialize};

pub use gp_adapter::endpoint::{MAX_RECORD_BYTES, MAX_TIMEOUT_MS};

/// Where and how to reach a TPP SystmOne native API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TppConfig {
    /// Base URL of the SystmOne API, e.g. `http://127.0.0.1:9001`.
    pub base_url: String,
    /// TCP connect timeout.
    #[serde(default = "endpoint::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, headers and body).
    #[serde(default = "endpoint::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest record page accepted, in bytes (each page is capped on its own).
    #[serde(default = "endpoint::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// CA bundle (PEM) an `https://` base URL's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `[systems.<id>.auth]`: API key, OAuth client credentials or mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Clinical events asked for per page (`pageSize`, 1 to [`MAX_PAGE_SIZE`]): fewer
    /// pages means fewer round trips, so the default is the API's maximum.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}

/// The largest `pageSize` the SystmOne API accepts.
pub const MAX_PAGE_SIZE: u32 = 100;

/// What is wrong with a [`TppConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TppConfigError {
    /// A shared endpoint setting (messages prefixed `tpp.`).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("tpp.page_size is {0}; it must be between 1 and {MAX_PAGE_SIZE}")]
    PageSizeOutOfRange(u32),
}

impl TppConfig {
    /// A config for `base_url` with every default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout_ms: endpoint::DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: endpoint::DEFAULT_REQUEST_TIMEOUT_MS,
            max_record_bytes: endpoint::DEFAULT_MAX_RECORD_BYTES,
            ca_file: None,
            auth: None,
            page_size: default_page_size(),
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
    pub fn validate(&self) -> Result<(), TppConfigError> {
        self.endpoint().validate()?;
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(TppConfigError::PageSizeOutOfRange(self.page_size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_fields_are_refused() {
        let c: TppConfig = serde_json::from_str(r#"{"base_url":"http://127.0.0.1:9001"}"#).unwrap();
        assert_eq!(c, TppConfig::new("http://127.0.0.1:9001"));
        assert_eq!(
            (
                c.connect_timeout_ms,
                c.request_timeout_ms,
                c.max_record_bytes
            ),
            (1000, 5000, 16 * 1024 * 1024)
        );
        assert_eq!(c.page_size, 100);
        assert!(c.validate().is_ok());
        assert!(
            serde_json::from_str::<TppConfig>(r#"{"base_url":"http://h","timeout":1}"#).is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = TppConfig::new("ftp://tpp.example");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("tpp.base_url: base URL 'ftp://tpp.example'")
        );
        c.base_url = "http://127.0.0.1:1".into();
        c.request_timeout_ms = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "tpp.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
        c.request_timeout_ms = 500;
        assert_eq!(
            c.validate().unwrap_err(),
            TppConfigError::Endpoint(EndpointError::ConnectExceedsRequest {
                system: crate::SYSTEM,
                connect: 1000,
                request: 500
            })
        );
        c.request_timeout_ms = 5000;
        c.max_record_bytes = 10;
        assert_eq!(
            c.validate().unwrap_err(),
            TppConfigError::Endpoint(EndpointError::RecordCapOutOfRange {
                system: crate::SYSTEM,
                value: 10
            })
        );
        c.max_record_bytes = 4096;
        for bad in [0, 101] {
            c.page_size = bad;
            assert_eq!(
                c.validate().unwrap_err().to_string(),
                format!("tpp.page_size is {bad}; it must be between 1 and 100")
            );
        }
        c.page_size = 1;
        assert!(c.validate().is_ok());
    }
}
