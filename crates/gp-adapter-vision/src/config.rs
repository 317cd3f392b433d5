//! Vision adapter configuration: the shared native endpoint settings
//! ([`gp_adapter::endpoint::EndpointConfig`]), checked purely (no network) so
//! `gp-gateway check-config` can run them in CI, with messages naming `vision.<field>`.

pub use gp_adapter::endpoint::{MAX_RECORD_BYTES, MAX_TIMEOUT_MS};

/// Where and how to reach a Vision native API: the `[systems.vision]` table.
pub type VisionConfig = gp_adapter::endpoint::EndpointConfig;

/// What is wrong with a [`VisionConfig`]; messages are prefixed `vision.`.
pub type VisionConfigError = gp_adapter::endpoint::EndpointError;

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
        assert!(c.validate(crate::SYSTEM).is_ok());
        assert!(
            serde_json::from_str::<VisionConfig>(r#"{"base_url":"http://h","timeout":1}"#).is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = VisionConfig::new("ftp://vision.example");
        assert!(
            c.validate(crate::SYSTEM)
                .unwrap_err()
                .to_string()
                .starts_with("vision.base_url: base URL 'ftp://vision.example'")
        );
        c.base_url = "http://127.0.0.1:1".into();
        c.request_timeout_ms = 0;
        assert_eq!(
            c.validate(crate::SYSTEM).unwrap_err().to_string(),
            "vision.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
        // The other checks are gp_adapter::endpoint's, tested there.
    }
}
