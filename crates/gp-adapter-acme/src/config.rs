//! `[systems.acme]`: the shared native endpoint settings
//! ([`gp_adapter::endpoint::EndpointConfig`]), checked purely (no network) so
//! `gp-gateway check-config` can run them in CI, with messages naming `acme.<field>`.

pub use gp_adapter::endpoint::{MAX_RECORD_BYTES, MAX_TIMEOUT_MS};

/// Where and how to reach Acme Clinical's native API: the `[systems.acme]` table.
pub type AcmeConfig = gp_adapter::endpoint::EndpointConfig;

/// What is wrong with a [`AcmeConfig`]; messages are prefixed `acme.`.
pub type AcmeConfigError = gp_adapter::endpoint::EndpointError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_unknown_fields_are_refused_and_problems_name_the_field() {
        let c: AcmeConfig =
            serde_json::from_str(r#"{"base_url":"http://127.0.0.1:9005"}"#).unwrap();
        assert_eq!(c, AcmeConfig::new("http://127.0.0.1:9005"));
        assert!(c.validate(crate::SYSTEM).is_ok());
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
            zero.validate(crate::SYSTEM).unwrap_err().to_string(),
            "acme.request_timeout_ms is 0 ms; it must be between 1 and 120000"
        );
    }
}
