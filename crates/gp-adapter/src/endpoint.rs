//! The settings every adapter has for reaching its GP system's native API (base URL,
//! timeouts, body cap): defaults, limits and pure validation, shared so each vendor's
//! config section accepts and refuses the same values with the same messages.
//!
//! Vendor configs keep the fields flat in their own struct (serde's
//! `deny_unknown_fields` does not combine with `flatten`) and use the default functions
//! here in `#[serde(default = "…")]`; [`Endpoint`] borrows them to validate and build
//! the [`NativeClient`].

use std::time::Duration;

use crate::GpSystem;
use crate::native::{NativeClient, NativeClientError, check_base_url};

/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Default whole-request timeout (connect, headers and body).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// Default cap on one native response, in bytes.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Longest timeout accepted: beyond this a hung GP system ties up gateway capacity.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Smallest record cap accepted.
pub const MIN_RECORD_BYTES: usize = 1024;
/// Largest record cap accepted (a whole GP record is a few MB at most).
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// `#[serde(default)]` for `connect_timeout_ms`.
pub fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

/// `#[serde(default)]` for `request_timeout_ms`.
pub fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

/// `#[serde(default)]` for `max_record_bytes`.
pub fn default_max_record_bytes() -> usize {
    DEFAULT_MAX_RECORD_BYTES
}

/// What is wrong with a system's endpoint settings. Messages name the field as it is
/// written under `[systems.<id>]` (`emis.request_timeout_ms …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{}.base_url: {source}", .system.id())]
    BaseUrl {
        system: GpSystem,
        source: NativeClientError,
    },
    #[error("{}.{field} is {value} ms; it must be between 1 and {MAX_TIMEOUT_MS}", .system.id())]
    TimeoutOutOfRange {
        system: GpSystem,
        field: &'static str,
        value: u64,
    },
    #[error(
        "{id}.connect_timeout_ms ({connect}) must not exceed {id}.request_timeout_ms ({request})",
        id = .system.id()
    )]
    ConnectExceedsRequest {
        system: GpSystem,
        connect: u64,
        request: u64,
    },
    #[error(
        "{}.max_record_bytes is {value}; it must be between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES}",
        .system.id()
    )]
    RecordCapOutOfRange { system: GpSystem, value: usize },
}

/// A view of one system's endpoint settings, borrowed from its vendor config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub system: GpSystem,
    pub base_url: &'a str,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_record_bytes: usize,
}

impl Endpoint<'_> {
    /// Checks the settings without any I/O; the first problem found is returned.
    pub fn validate(&self) -> Result<(), EndpointError> {
        let system = self.system;
        check_base_url(self.base_url)
            .map_err(|source| EndpointError::BaseUrl { system, source })?;
        for (field, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == 0 || value > MAX_TIMEOUT_MS {
                return Err(EndpointError::TimeoutOutOfRange {
                    system,
                    field,
                    value,
                });
            }
        }
        if self.connect_timeout_ms > self.request_timeout_ms {
            return Err(EndpointError::ConnectExceedsRequest {
                system,
                connect: self.connect_timeout_ms,
                request: self.request_timeout_ms,
            });
        }
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&self.max_record_bytes) {
            return Err(EndpointError::RecordCapOutOfRange {
                system,
                value: self.max_record_bytes,
            });
        }
        Ok(())
    }

    /// Validates, then builds the [`NativeClient`] (no I/O until the first call).
    pub fn client(&self) -> Result<NativeClient, EndpointError> {
        self.validate()?;
        let system = self.system;
        NativeClient::new(
            system,
            self.base_url,
            Duration::from_millis(self.connect_timeout_ms),
            Duration::from_millis(self.request_timeout_ms),
            self.max_record_bytes,
        )
        .map_err(|source| EndpointError::BaseUrl { system, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(system: GpSystem, base_url: &str) -> Endpoint<'_> {
        Endpoint {
            system,
            base_url,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    #[test]
    fn defaults_are_valid() {
        for system in [crate::test_systems::EMIS, crate::test_systems::TPP] {
            assert!(endpoint(system, "http://127.0.0.1:9001").validate().is_ok());
            assert!(endpoint(system, "http://127.0.0.1:9001").client().is_ok());
        }
        assert_eq!(
            (
                default_connect_timeout_ms(),
                default_request_timeout_ms(),
                default_max_record_bytes()
            ),
            (1000, 5000, 16 * 1024 * 1024)
        );
    }

    #[test]
    fn messages_name_the_system_and_field() {
        let mut e = endpoint(crate::test_systems::TPP, "https://tpp.example");
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .starts_with("tpp.base_url: base URL 'https://tpp.example'")
        );
        e.base_url = "http://127.0.0.1:1";
        e.connect_timeout_ms = 200_000;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.connect_timeout_ms is 200000 ms; it must be between 1 and 120000"
        );
        e.connect_timeout_ms = 1000;
        e.request_timeout_ms = 500;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.connect_timeout_ms (1000) must not exceed tpp.request_timeout_ms (500)"
        );
        e.request_timeout_ms = 5000;
        e.max_record_bytes = 1023;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.max_record_bytes is 1023; it must be between 1024 and 268435456"
        );
        e.max_record_bytes = 1024;
        assert!(e.validate().is_ok());
    }
}
