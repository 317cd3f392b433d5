//! Microtest adapter configuration: the shared native endpoint settings
//! ([`gp_adapter::endpoint::EndpointConfig`]), checked purely (no network) so
//! `gp-gateway check-config` can run them in CI, with messages naming `microtest.<field>`.

pub use gp_adapter::endpoint::{MAX_RECORD_BYTES, MAX_TIMEOUT_MS};

/// Where and how to reach a Microtest Evolution native API: the `[systems.microtest]` table.
pub type MicrotestConfig = gp_adapter::endpoint::EndpointConfig;

/// What is wrong with a [`MicrotestConfig`]; messages are prefixed `microtest.`.
pub type MicrotestConfigError = gp_adapter::endpoint::EndpointError;

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
        assert!(c.validate(crate::SYSTEM).is_ok());
        assert!(
            serde_json::from_str::<MicrotestConfig>(r#"{"base_url":"http://h","timeout":1}"#)
                .is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = MicrotestConfig::new("ftp://microtest.example");
        assert!(
            c.validate(crate::SYSTEM)
                .unwrap_err()
                .to_string()
                .starts_with("microtest.base_url: base URL 'ftp://microtest.example'")
        );
        c.base_url = "http://127.0.0.1:1".into();
        c.request_timeout_ms = 0;
        assert_eq!(
            c.validate(crate::SYSTEM).unwrap_err().to_string(),
            "microtest.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
        // The other checks are gp_adapter::endpoint's, tested there.
    }
}
